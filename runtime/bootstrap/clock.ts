import { BootstrapError } from './errors';

/** Time, injectable so tests run minutes of waiting in milliseconds. */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export interface PollOptions {
  readonly timeoutMs: number;
  readonly intervalMs: number;
  /** Says what was awaited, for the timeout message. */
  readonly what: string;
}

/**
 * Calls `check` until it returns a value (not undefined) or the deadline
 * passes. `check` may throw to stop waiting early.
 */
export async function pollUntil<T>(clock: Clock, options: PollOptions, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = clock.now() + options.timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (clock.now() >= deadline) {
      throw new BootstrapError('ETIMEOUT', `timed out after ${Math.round(options.timeoutMs / 1000)} s waiting for ${options.what}`);
    }
    await clock.sleep(options.intervalMs);
  }
}
