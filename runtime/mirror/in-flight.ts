// The primary's replication batches on the link, in order: up to `depth` sent
// and not yet acknowledged. The secondary applies frames one after the other
// and acknowledges each batch durable in the same order, so the oldest batch
// in flight is always the next one acknowledged. The daemon keeps one batch
// out (depth 1), in mode sync too: a window of two (a barrier arriving while
// a batch was out got its own batch at once, behind it) made more, smaller
// batches and cost both mirrors more CPU a message (test/bench/README.md);
// the window stays general.
import { VolleyError } from '../shared/errors';
import type { Frame } from '../shared/proxy-protocol';
import type { Batch } from './sender';

export interface FlightEntry {
  seq: number;
  batch: Batch;
  /** The replication scan the batch came from (mode sync): its barriers are answered when a complete batch is acked. */
  scan?: number;
}

export class InFlight {
  private readonly queue: FlightEntry[] = [];
  /**
   * The read of the oldest batch's ack: kept across a wait a barrier cut
   * short, and kept once it resolved until `landed` says the ack was
   * recorded, so no frame is read twice and no ack that came while nobody
   * waited is lost (its barriers would wait for sync_timeout).
   */
  private reading?: Promise<FlightEntry>;

  constructor(
    readonly depth: number,
    /** The next frame from the secondary (after the epoch check). */
    private readonly next: () => Promise<Frame>,
  ) {
    if (!Number.isSafeInteger(depth) || depth < 1) throw new VolleyError('EMIRRORCONFIG', `batches in flight must be at least 1, not ${depth}`);
  }

  get size(): number {
    return this.queue.length;
  }

  get full(): boolean {
    return this.queue.length >= this.depth;
  }

  /** A batch was just sent. */
  add(entry: FlightEntry): void {
    if (this.full) throw new VolleyError('EMIRRORPROTO', `more than ${this.depth} batches in flight`);
    this.queue.push(entry);
  }

  /**
   * Resolves with the oldest batch once its durable ack came (again, until
   * `landed`); any other frame than `received` or that ack is EMIRRORPROTO.
   */
  acked(): Promise<FlightEntry> {
    if (this.queue.length === 0) return Promise.reject(new VolleyError('EMIRRORPROTO', 'no batch in flight to wait for'));
    if (!this.reading) {
      const reading = this.read(this.queue[0]);
      // A wait cut short and then abandoned (the link closed, the daemon stopped) must not leave an unhandled rejection.
      reading.catch(() => undefined);
      this.reading = reading;
    }
    return this.reading;
  }

  /** The caller recorded the oldest batch's ack: the next wait is for the batch after it. */
  landed(entry: FlightEntry): void {
    if (this.queue[0] !== entry) throw new VolleyError('EMIRRORPROTO', `batch ${entry.seq} landed out of order`);
    this.queue.shift();
    this.reading = undefined;
  }

  private async read(oldest: FlightEntry): Promise<FlightEntry> {
    for (;;) {
      const f = await this.next();
      // A secondary of an earlier release sends `received` before each ack (nothing read it): skipped.
      if (f.header.t === 'received') continue;
      if (f.header.t === 'ack' && f.header.seq === oldest.seq) return oldest;
      throw new VolleyError('EMIRRORPROTO', `expected ack ${oldest.seq}, got ${String(f.header.t).slice(0, 40)}${f.header.t === 'ack' ? ` ${String(f.header.seq)}` : ''}`);
    }
  }
}
