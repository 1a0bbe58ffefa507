// A Clock whose timers run only when a test fires them: for a deadline of
// many seconds in a component that also does real socket I/O, where jest's
// fake timers would also move the test clients' own timeouts.
import type { Clock, TimerHandle } from '../../runtime/shared/clock';

export class ManualTimers implements Clock {
  private readonly timers = new Map<number, { fn: () => void; ms: number }>();
  private next = 0;
  now = (): number => Date.now();
  setTimeout(fn: () => void, ms: number): TimerHandle {
    this.timers.set(++this.next, { fn, ms });
    return this.next as unknown as TimerHandle;
  }
  clearTimeout(timer: TimerHandle | undefined): void {
    this.timers.delete(timer as unknown as number);
  }
  setInterval(): TimerHandle {
    throw new Error('no intervals here');
  }
  clearInterval(): void {
    throw new Error('no intervals here');
  }
  /** The delays of the timers now pending. */
  pending(): number[] {
    return [...this.timers.values()].map((t) => t.ms);
  }
  /** Runs every pending timer, as if their time had come. */
  fire(): void {
    const due = [...this.timers.values()];
    this.timers.clear();
    for (const t of due) t.fn();
  }
}
