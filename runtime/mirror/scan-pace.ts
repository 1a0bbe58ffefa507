// The primary's pace of replication scans under mode sync: while barriers
// keep coming, a scan starts no sooner than SYNC_SCAN_GAP_MS after the one
// before it, so the barriers of that interval share one scan and one batch.
// Without it the mirror scanned again as soon as a barrier came and the link
// had room: on the bench (20 sessions, 2 KB) ~0.34 batches a message, and
// the primary mirror's CPU (~190 µs a message, scan, hashing, a TLS frame
// each way, the barriers' answers) followed them. Measured in paired runs
// (test/bench/README.md): 3 ms, ~0.18 batches a message, the primary at
// ~130 µs, the mean barrier latency unchanged; 6 ms, ~0.09-0.10, the
// primary at ~95-115 µs and the secondary at ~65-80, the barrier ~1-1.6 ms
// slower; 10 ms, little less CPU and ~5 ms slower. The barrier runs
// alongside the MTA's own fsync (the 250 waits for both), so part of the
// gap is hidden behind it; the rest is latency a fixed number of sessions
// pays. A scan after a quiet spell (the last one longer than the gap ago)
// starts at once, and only scans that answer barriers are paced (the idle
// poll and catch-up batches are not: a lone barrier after an idle scan, or
// a secondary catching up, must not wait for the gap).
export const SYNC_SCAN_GAP_MS = 6;

export class ScanPace {
  private last?: number;

  constructor(
    readonly gapMs: number,
    private readonly now: () => number,
  ) {}

  /** How long the next scan must wait, in ms (0: it may start now); never more than the gap, whatever the clock did. */
  delay(): number {
    if (this.last === undefined) return 0;
    // Clamped: a clock stepped back (NTP) must not hold every barrier for the size of the step.
    return Math.min(this.gapMs, Math.max(0, this.last + this.gapMs - this.now()));
  }

  /** A scan starts now. */
  started(): void {
    this.last = this.now();
  }
}

/** A plain timer: a barrier's kick must not cut this wait short (that is the point of it). */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
