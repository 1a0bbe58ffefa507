// The retry heap and its one timer: deferred mail waits here, keyed by its
// next-retry time, until it is due. Owns only the heap and the timer; what a
// due message becomes (a job, a parked entry) is the engine's call.
import type { Clock, TimerHandle } from '../../../shared/clock';
import type { SpoolEntry } from '../../spool/types';
import { MinHeap } from './heap';

/** Due messages handed over per turn of the event loop: enough to keep up, few enough not to starve I/O. */
const BATCH = 5000;

export class RetryTimer {
  /** Only references to the spool index: a million waiting messages cost no more than their index entries. */
  private readonly waiting = new MinHeap<SpoolEntry>();
  private timer?: TimerHandle;
  private timerAt = Infinity;

  /**
   * `running`: false while delivery is paused or stopped (the timer is not armed).
   * `due`: one message whose time has come; true when it was taken (it counts toward the batch).
   * `afterBatch`: once per batch, after its messages were handed over.
   */
  constructor(
    private readonly clock: Clock,
    private readonly running: () => boolean,
    private readonly due: (entry: SpoolEntry, now: number) => boolean,
    private readonly afterBatch: () => void,
  ) {}

  get size(): number {
    return this.waiting.size;
  }

  push(at: number, entry: SpoolEntry): void {
    this.waiting.push(at, entry);
  }

  pushAll(entries: Iterable<SpoolEntry>): void {
    this.waiting.pushAll(entries, (e) => e.next);
  }

  /** Holds the timer (a pause or a stop); `arm` starts it again. */
  disarm(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  arm(): void {
    if (!this.running()) return;
    const at = this.waiting.peekKey();
    if (at === undefined) return;
    if (at >= this.timerAt && this.timer) return;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = this.clock.setTimeout(() => this.fire(), Math.max(0, Math.min(at - this.clock.now(), 2 ** 31 - 1)));
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (!this.running()) return; // a batch continued by setImmediate may outlive a stop
    const now = this.clock.now();
    let n = 0;
    while (n < BATCH && (this.waiting.peekKey() ?? Infinity) <= now) {
      if (this.due(this.waiting.pop()!, now)) n++;
    }
    if (n === BATCH) setImmediate(() => this.fire());
    else this.arm();
    this.afterBatch();
  }
}
