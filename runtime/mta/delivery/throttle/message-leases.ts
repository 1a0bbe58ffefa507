// A worker's side of message leases: spends blocks of message permits the
// primary granted, locally, instead of asking the primary for each message.
import type { LeaseGrant } from './lease-book';
import type { Limits } from './throttles';

/** How a worker reaches the primary's lease book (over the cluster IPC channel). */
export interface LeaseChannel {
  lease(key: string, limits: Limits, want: number): Promise<LeaseGrant>;
  giveBack(key: string, lease: number, unspent: number): void;
}

/**
 * Permits asked for at once. With a block of B a worker asks the primary
 * once per B messages of a rate-limited destination instead of once per
 * message; the primary grants less near the hour's limit (at most 1/(2N) of
 * what is left, N workers). Measured on the bench load (README, MTA): see
 * test/bench/README.md, 2026-12-05, MTA workers without a round trip per message.
 */
export const LEASE_BLOCK = 64;

/** A block unused this long goes back to the primary, so another worker can spend it. */
export const LEASE_IDLE_MS = 1_000;

interface Lease {
  lease: number;
  left: number;
  lastUse: number;
  timer: NodeJS.Timeout;
}

export class MessageLeases {
  private readonly leases = new Map<string, Lease>();
  private readonly asking = new Map<string, Promise<LeaseGrant>>();

  constructor(
    private readonly channel: LeaseChannel,
    private readonly now: () => number = Date.now,
    private readonly block = LEASE_BLOCK,
  ) {}

  /** A message permit for `key`: from the block held, or a new block from the primary. */
  async take(key: string, limits: Limits): Promise<{ ok: true } | { ok: false; waitMs: number }> {
    if (!Number.isFinite(limits.maxMessagesPerHour)) return { ok: true };
    for (;;) {
      const held = this.leases.get(key);
      if (held && held.left > 0) {
        held.left--;
        held.lastUse = this.now();
        return { ok: true };
      }
      // One ask per key at a time: the others wait for its block.
      let ask = this.asking.get(key);
      if (!ask) {
        if (held) this.drop(key, held); // spent: the next ask settles it at the primary
        ask = this.channel.lease(key, limits, this.block).then((g) => {
          this.asking.delete(key);
          if (g.n > 0) this.install(key, g);
          return g;
        });
        this.asking.set(key, ask);
      }
      const g = await ask;
      if (g.n === 0) return { ok: false, waitMs: g.waitMs };
    }
  }

  /** The primary wants the unspent permits of `key` back: another worker ran short. */
  recall(key: string): void {
    const held = this.leases.get(key);
    if (!held) return;
    this.drop(key, held);
    this.channel.giveBack(key, held.lease, held.left);
  }

  /** Gives every block back (a config refresh may change the limits; a stopping worker sends no more). */
  returnAll(): void {
    for (const key of [...this.leases.keys()]) this.recall(key);
  }

  /** Unspent permits held for a key. */
  held(key: string): number {
    return this.leases.get(key)?.left ?? 0;
  }

  private install(key: string, g: LeaseGrant): void {
    const old = this.leases.get(key);
    if (old) this.drop(key, old);
    const lease: Lease = { lease: g.lease, left: g.n, lastUse: this.now(), timer: undefined as unknown as NodeJS.Timeout };
    lease.timer = this.idleTimer(key, lease, LEASE_IDLE_MS);
    this.leases.set(key, lease);
  }

  /** One timer per block, not one per message: it looks at the last use when it fires. */
  private idleTimer(key: string, lease: Lease, ms: number): NodeJS.Timeout {
    const t = setTimeout(() => {
      if (this.leases.get(key) !== lease) return;
      const idle = this.now() - lease.lastUse;
      if (idle < LEASE_IDLE_MS) lease.timer = this.idleTimer(key, lease, LEASE_IDLE_MS - idle);
      else this.recall(key);
    }, ms);
    t.unref();
    return t;
  }

  private drop(key: string, lease: Lease): void {
    clearTimeout(lease.timer);
    this.leases.delete(key);
  }
}
