// jest's fake timers for in-process delivery tests: the engine's time (its
// retry heap, holds, lingering connections, the attempt log's commit interval)
// moves only when a test advances it, while real I/O (sockets, spool and log
// files) and setImmediate / nextTick stay real, so the spool and the attempt
// log still write and a scripted MX still answers.
import { runDueFakeTimers, waitUntil } from './proxy-fixtures';

/** Fake timers for every test of the calling file (installed before each, removed after). */
export function useFakeTime(): void {
  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'clearImmediate', 'queueMicrotask'] });
  });
  afterEach(() => {
    jest.useRealTimers();
  });
}

/**
 * Waits for `check`, moving fake time on by `stepMs` whenever the I/O already
 * started has had a few polls to finish without meeting it (a retry, a
 * throttle's hold): for tests that need time to pass but do not measure it.
 * Returns the fake time it moved.
 */
export async function advanceUntil(check: () => boolean, stepMs: number, maxSteps = 1_000, state?: () => string): Promise<number> {
  for (let steps = 0; ; steps++) {
    runDueFakeTimers();
    if (check()) return steps * stepMs;
    try {
      await waitUntil(check, 100);
      return steps * stepMs;
    } catch {
      if (steps >= maxSteps) throw new Error(`condition not met after ${steps * stepMs} ms of fake time${state ? `: ${state()}` : ''}`);
    }
    await jest.advanceTimersByTimeAsync(stepMs);
  }
}
