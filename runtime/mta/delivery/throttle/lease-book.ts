// The primary's side of message leases: grants MTA workers blocks of
// message permits from the node's hourly counts, takes back what they did
// not spend, and recalls idle blocks when another worker runs short.
import type { Limits, Throttles } from './throttles';

/** A lease as it goes back to the worker: `n` permits (0: none now, ask again in `waitMs`). */
export interface LeaseGrant {
  lease: number;
  n: number;
  waitMs: number;
}

/**
 * When the hour's permits are all out on other workers' leases (counted, not
 * necessarily sent), the asker tries again this soon: the holders are
 * recalled meanwhile and give back what they have not spent.
 */
export const RECALL_RETRY_MS = 100;

interface Held {
  lease: number;
  /** Permits granted: an upper bound on what can come back. */
  n: number;
  /** The minute they were counted in. */
  minute: number;
  recalled: boolean;
}

/**
 * The node's count stays exact: a block is counted as sent when it is
 * granted, so the sum of what all workers can send never exceeds the limit,
 * and unspent permits are uncounted when they come back. A worker asks only
 * once its block on a key is spent, so a new ask settles the previous lease.
 */
export class LeaseBook {
  private nextLease = 0;
  /** Per key, the current lease of each worker that holds one. */
  private readonly held = new Map<string, Map<number, Held>>();

  constructor(
    private readonly throttles: Throttles,
    /** How many workers share the node's limits: a grant is at most 1/(2N) of what the hour has left. */
    private readonly workers: () => number,
    private readonly recall: (worker: number, key: string) => void,
  ) {}

  grant(worker: number, key: string, limits: Limits, want: number): LeaseGrant {
    const byWorker = this.held.get(key) ?? new Map<number, Held>();
    byWorker.delete(worker); // spent: the worker asks only when it has none left
    const block = Number.isFinite(want) ? Math.max(1, Math.floor(want)) : 1;
    const r = this.throttles.leaseMessages(key, limits, block, 1 / (2 * Math.max(1, this.workers())));
    if (r.n > 0) {
      const lease = ++this.nextLease;
      byWorker.set(worker, { lease, n: r.n, minute: r.minute, recalled: false });
      this.held.set(key, byWorker);
      return { lease, n: r.n, waitMs: 0 };
    }
    if (byWorker.size === 0) {
      this.held.delete(key);
      return { lease: 0, n: 0, waitMs: r.waitMs };
    }
    // The hour's permits are out on other workers' leases: ask for the unspent ones back.
    for (const [other, h] of byWorker) {
      if (h.recalled) continue;
      h.recalled = true;
      this.recall(other, key);
    }
    return { lease: 0, n: 0, waitMs: Math.min(r.waitMs, RECALL_RETRY_MS) };
  }

  /** A worker gives back the unspent part of a lease (idle, recalled, refreshed or stopping). */
  giveBack(worker: number, key: string, lease: number, unspent: number): void {
    const byWorker = this.held.get(key);
    const h = byWorker?.get(worker);
    if (!byWorker || !h || h.lease !== lease) return; // settled already by a newer ask
    this.throttles.returnMessages(key, Math.max(0, Math.min(unspent, h.n)), h.minute);
    byWorker.delete(worker);
    if (byWorker.size === 0) this.held.delete(key);
  }

  /**
   * A worker is gone: its leases stay counted as sent. It may have sent them
   * all before it died, so giving them back could exceed the limit; the cost
   * is at most one block of the hour left unused.
   */
  forget(worker: number): void {
    for (const [key, byWorker] of this.held) {
      byWorker.delete(worker);
      if (byWorker.size === 0) this.held.delete(key);
    }
  }

  /** Permits out on leases for a key (granted, not yet settled). */
  outstanding(key: string): number {
    let n = 0;
    for (const h of this.held.get(key)?.values() ?? []) n += h.n;
    return n;
  }
}
