// An in-memory batch sink for the dispatcher's tests: it acknowledges every
// batch at once ('ack'), holds each until the test releases it ('hold'), or
// never answers ('dead', a receiver that is down). It records what it was
// offered and what it acknowledged, so tests count instead of timing.
import type { EventSink, SinkBatch, SinkStats, VolleyEvent } from '../../runtime/mta/events/types';

export type SinkMode = 'ack' | 'hold' | 'dead';

interface Held {
  batch: SinkBatch;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class MemorySink implements EventSink {
  /** Batches offered, in the order they came. */
  readonly offered: SinkBatch[] = [];
  /** Batches acknowledged, in the order they were. */
  readonly acked: SinkBatch[] = [];
  readonly held: Held[] = [];
  private closed = false;
  /** The dispatcher holds what is ready up to maxWaitMs to fill a batch (as the SQLite sink asks). */
  fillBatches = false;

  constructor(
    readonly name: string,
    public mode: SinkMode = 'ack',
    readonly batchSize = 100,
    readonly concurrency = 2,
    readonly maxWaitMs = 1000,
  ) {}

  deliver(batch: SinkBatch): Promise<void> {
    if (this.closed) return Promise.reject(new Error('closed'));
    this.offered.push(batch);
    if (this.mode === 'ack') {
      this.acked.push(batch);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => this.held.push({ batch, resolve, reject }));
  }

  /** Acknowledges the held batch at `index` (in the order they were offered). */
  release(index: number): void {
    const [h] = this.held.splice(index, 1);
    this.acked.push(h.batch);
    h.resolve();
  }

  /** Every acknowledged event, in order of acknowledgement. */
  events(): VolleyEvent[] {
    return this.acked.flatMap((b) => [...b.events]);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const h of this.held.splice(0)) h.reject(new Error('sink closed'));
  }

  stats(): SinkStats {
    return { delivered: this.acked.length, deliveredEvents: this.events().length, retries: 0, deadLettered: 0 };
  }
}
