const BUCKET_MS = 60_000;
const BUCKETS = 60;

/**
 * Messages sent over the last hour, in 60 one-minute buckets: a sliding
 * window without a timestamp per message, so a limit of a million an hour
 * costs 60 numbers. Shared by the node's throttles and the proxy's.
 */
export class HourWindow {
  private readonly buckets = new Array<number>(BUCKETS).fill(0);
  private bucketAt: number;

  constructor(private readonly now: () => number) {
    this.bucketAt = Math.floor(now() / BUCKET_MS) * BUCKET_MS;
  }

  get used(): number {
    this.roll();
    return this.buckets.reduce((a, b) => a + b, 0);
  }

  /** Counts one message if the limit allows; otherwise says when the oldest minute leaves the window. */
  take(limit: number): { ok: true } | { ok: false; waitMs: number } {
    if (this.used < limit) {
      this.buckets[BUCKETS - 1]++;
      return { ok: true };
    }
    const oldest = this.buckets.findIndex((b) => b > 0);
    return { ok: false, waitMs: oldest < 0 ? BUCKET_MS : Math.max(1000, (oldest + 1) * BUCKET_MS - (this.now() - this.bucketAt)) };
  }

  private roll(): void {
    const current = Math.floor(this.now() / BUCKET_MS) * BUCKET_MS;
    const steps = Math.min(BUCKETS, Math.floor((current - this.bucketAt) / BUCKET_MS));
    for (let i = 0; i < steps; i++) {
      this.buckets.shift();
      this.buckets.push(0);
    }
    if (steps > 0) this.bucketAt = current;
  }
}
