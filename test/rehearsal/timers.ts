// The runner's time: RestartSec=, TimeoutStopSec= and timer units wait on a
// Timers object, so a test can fire "two minutes later" on demand instead of
// waiting (ManualTimers) while the rehearsal itself runs on real time.
export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

interface Pending {
  readonly at: number;
  readonly fn: () => void;
  readonly id: number;
}

/** Time that moves only when the test says: `advance(ms)` fires what falls due, in order. */
export class ManualTimers implements Timers {
  private current = 0;
  private nextId = 1;
  private pending: Pending[] = [];

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const entry = { at: this.current + Math.max(0, ms), fn, id: this.nextId++ };
    this.pending.push(entry);
    return entry.id;
  }

  clearTimeout(handle: unknown): void {
    this.pending = this.pending.filter((p) => p.id !== handle);
  }

  /** Delays of the timers waiting now, from the current time (a test reads what the runner armed). */
  waiting(): number[] {
    return this.pending.map((p) => p.at - this.current).sort((a, b) => a - b);
  }

  advance(ms: number): void {
    const until = this.current + ms;
    for (;;) {
      const due = this.pending.filter((p) => p.at <= until).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.pending = this.pending.filter((p) => p !== due);
      this.current = due.at;
      due.fn();
    }
    this.current = until;
  }
}
