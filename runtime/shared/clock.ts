// The time and the timers a component runs on. Injected (the delivery
// engine, the group commit, the attempt log) so that tests move time
// themselves, with jest's fake timers or any other clock, instead of sleeping.

export type TimerHandle = ReturnType<typeof setTimeout>;

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(timer: TimerHandle | undefined): void;
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(timer: TimerHandle | undefined): void;
}

/**
 * Wall-clock time and Node's timers. Each is looked up when called, not when
 * this module loads: jest.useFakeTimers() replaces the globals after that.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (timer) => clearInterval(timer),
};
