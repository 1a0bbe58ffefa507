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
    return { ok: false, waitMs: this.waitMs };
  }

  /**
   * Counts up to `want` messages at once, as many as the limit leaves
   * (0 when none): a block leased to an MTA worker, counted as sent until
   * what it did not spend comes back through `giveBack`.
   */
  takeUpTo(limit: number, want: number): number {
    const n = Math.max(0, Math.min(want, limit - this.used));
    this.buckets[BUCKETS - 1] += n;
    return n;
  }

  /** When the oldest counted minute leaves the window (what `take` says when the limit is reached). */
  get waitMs(): number {
    this.roll();
    const oldest = this.buckets.findIndex((b) => b > 0);
    return oldest < 0 ? BUCKET_MS : Math.max(1000, (oldest + 1) * BUCKET_MS - (this.now() - this.bucketAt));
  }

  /** The start of the minute `at` is counted in (what a lease remembers to give back to). */
  static minuteOf(at: number): number {
    return Math.floor(at / BUCKET_MS) * BUCKET_MS;
  }

  /**
   * Uncounts `n` messages counted in the minute starting at `minute`, if it
   * is still in the window (a minute gone from the window has nothing to
   * give back), never below zero.
   */
  giveBack(n: number, minute: number): void {
    this.roll();
    const i = BUCKETS - 1 - Math.round((this.bucketAt - minute) / BUCKET_MS);
    if (i < 0 || i >= BUCKETS) return;
    this.buckets[i] = Math.max(0, this.buckets[i] - n);
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
