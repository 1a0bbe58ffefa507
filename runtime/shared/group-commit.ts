import { systemClock, type Clock } from './clock';

export interface GroupCommitOptions {
  /**
   * How long a batch collects, counted from its first item (default 0: until
   * the next turn of the event loop). For a log nobody's reply waits on, a
   * few milliseconds turn many small synced writes into one.
   */
  intervalMs?: number;
  /** What the interval is counted on (the system's when absent); a test's fake clock makes it instant. */
  clock?: Clock;
}

/**
 * Group commit for a durable log: one write at a time, and everything added
 * meanwhile (or in the same turn of the event loop) goes in the next one, so
 * concurrent callers share a sync. The spool and the attempt log both commit
 * this way.
 *
 * `write` settles every item of its batch itself (resolve or reject each);
 * it must not throw.
 */
export class GroupCommit<T> {
  private queue: T[] = [];
  /** When the first item of `queue` came. */
  private firstAt = 0;
  private writing = false;
  private scheduled = false;
  private idleWaiters: (() => void)[] = [];
  private readonly intervalMs: number;
  private readonly clock: Clock;

  constructor(
    private readonly write: (batch: T[]) => Promise<void>,
    options: GroupCommitOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 0;
    this.clock = options.clock ?? systemClock;
  }

  add(item: T): void {
    // The spool's commits (no interval) skip the clock: they go at the next turn.
    if (this.intervalMs > 0 && this.queue.length === 0) this.firstAt = this.clock.now();
    this.queue.push(item);
    if (!this.writing && !this.scheduled) this.schedule();
  }

  /** Resolves once nothing is queued or being written. */
  idle(): Promise<void> {
    if (!this.writing && !this.scheduled) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    // At least one turn of the event loop first: the callers whose work ended
    // in the same batch of I/O join this write. With no interval no longer
    // than that: for the spool, every moment an item waits here is a client
    // waiting for its 250. With one, what is left of it since the first item
    // came (items that waited through a write have had some of it already).
    this.scheduled = true;
    const go = (): void => {
      this.scheduled = false;
      if (!this.writing) void this.run();
    };
    const wait = this.intervalMs > 0 ? this.intervalMs - (this.clock.now() - this.firstAt) : 0;
    if (wait > 0) this.clock.setTimeout(go, wait);
    else setImmediate(go);
  }

  private async run(): Promise<void> {
    this.writing = true;
    const batch = this.queue;
    this.queue = [];
    try {
      await this.write(batch);
    } finally {
      this.writing = false;
      if (this.queue.length > 0) this.schedule();
      else for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}
