// The arbiter lease, kept by each node of a pair (automatic failover).
//
// On the primary: the lease is written (conditionally) every lease_ttl/3,
// each time to expire lease_ttl after the write began. A fence timer is
// armed for FENCE_MARGIN before the expiry of the last write that
// succeeded; a renewal that succeeds moves it on, and nothing else does (a
// write that hangs does not). When it fires, the node fences itself: intake
// stops and the MTA is stopped while the lease is still its own, so by the
// time the peer may take the lease nothing accepts mail here any more. A
// lease that another node holds with a higher epoch makes this node that
// epoch's secondary at once.
//
// On the secondary: the lease is read every lease_ttl/5. Once it has
// expired, and this node is caught up, not outdated, and the holder did not
// say its secondary is outdated (peer_outdated), the node writes the lease
// for itself, conditioned on the version it read, with epoch + 1: of two
// nodes racing for it, one wins. Only then does it become the primary.
import type { Logger } from '../shared/log';
import { VolleyError, errorCode } from '../shared/errors';
import { LEASE_CONFLICT, type Arbiter, type Lease, type LeaseRead } from './arbiter';
import type { MirrorState } from './state';

/** Fraction of the ttl before the expiry at which a primary that could not renew fences itself. */
export const FENCE_MARGIN = 1 / 4;

/**
 * The longest a primary's renewNow (a sync degrade's lease write) may take in
 * all: a round under way, its own write, a conflict's read and write can take
 * several seconds on a slow S3 arbiter (each call up to lease_ttl/6). The MTA
 * waits sync_timeout + MTA_MIRROR_MARGIN_MS (stacks/topology.ts) for a
 * barrier's answer; that margin is this plus a second, so the daemon's
 * refusal or answer always comes first.
 */
export const RENEW_NOW_DEADLINE_MS = 2000;

export interface LeaseHost {
  state(): MirrorState;
  /** The primary can no longer be sure it holds the lease: stop intake and the MTA, step down. */
  selfFence(why: string): void;
  /** A lease of a higher epoch (another primary): become its secondary. */
  superseded(lease: Lease): void;
  /** Why this secondary may not take an expired lease (undefined: it may). */
  cannotTakeOver(lease: Lease): string | undefined;
  /** This secondary holds the lease of `epoch` now: become the primary of it. */
  tookOver(epoch: number): void;
}

export interface LeaseStatus {
  arbiter: string;
  holder?: string;
  epoch?: number;
  expires_at?: string;
  /** This node holds the lease (primary) and until when, as far as it can be sure. */
  held_until?: string;
  errors: number;
  last_error?: string;
}

export interface LeaseKeeperOptions {
  arbiter: Arbiter;
  name: string;
  ttlMs: number;
  host: LeaseHost;
  logger: Logger;
  now?: () => number;
}

export class LeaseKeeper {
  private readonly now: () => number;
  private timer?: NodeJS.Timeout;
  private fenceTimer?: NodeJS.Timeout;
  private etag?: string;
  private heldUntil?: number;
  private lastSeen?: Lease;
  private stopped = true;
  private running?: Promise<void>;
  errors = 0;
  private lastError?: string;

  constructor(private readonly o: LeaseKeeperOptions) {
    this.now = o.now ?? Date.now;
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.disarm();
    // A round stuck on an arbiter that does not answer must not hold the daemon's stop for ever.
    let bound: NodeJS.Timeout | undefined;
    await Promise.race([this.running, new Promise<void>((r) => (bound = setTimeout(r, this.o.ttlMs)))]);
    clearTimeout(bound);
  }

  status(): LeaseStatus {
    const l = this.lastSeen;
    return {
      arbiter: this.o.arbiter.where,
      ...(l ? { holder: l.holder, epoch: l.epoch, expires_at: new Date(l.expires_at).toISOString() } : {}),
      ...(this.heldUntil !== undefined ? { held_until: new Date(this.heldUntil).toISOString() } : {}),
      errors: this.errors,
      ...(this.lastError ? { last_error: this.lastError } : {}),
    };
  }

  /** Seconds until the lease this node last saw expires (negative: expired); undefined before any read. */
  expiresInSeconds(): number | undefined {
    return this.lastSeen ? (this.lastSeen.expires_at - this.now()) / 1000 : undefined;
  }

  /** This node held the lease and gave it up (switchover, demotion): stop renewing it and never fence on its account. */
  released(): void {
    this.disarm();
    this.etag = undefined;
  }

  /**
   * Takes the lease for a promotion this node was asked for (manual, or a
   * switchover handed over by `from`): refused while another node's lease is
   * live, unless `force` or it is `from`'s own.
   */
  async acquire(epoch: number, opts: { force?: boolean; from?: { holder: string; epoch: number } } = {}): Promise<void> {
    const start = this.now();
    const r = await this.read();
    const l = r.lease;
    const handedOver = l && opts.from && l.holder === opts.from.holder && l.epoch === opts.from.epoch;
    if (l && l.expires_at > start && l.holder !== this.o.name && !handedOver && !opts.force) {
      throw new VolleyError('ELEASEHELD', `the arbiter lease is held by ${l.holder} (epoch ${l.epoch}) until ${new Date(l.expires_at).toISOString()}: that node is the primary; use --force only if it is certainly down (its own fence stops it at the latest then)`);
    }
    if (l && l.epoch >= epoch && !opts.force) {
      throw new VolleyError('ELEASEEPOCH', `the arbiter lease names epoch ${l.epoch} (${l.holder}), not older than ${epoch}: another promotion happened; this node is behind`);
    }
    await this.writeOwn(epoch, start, r.etag);
  }

  /**
   * The primary writes its lease now instead of at the next renewal (it
   * carries peer_outdated as the state says): after a sync degrade the
   * arbiter must know the secondary is outdated before any mail is
   * acknowledged without it. Waits for a round under way (one write at a
   * time: each names the version the last one left); rejects when the write
   * fails, when the round it waited for left this node no longer the primary
   * (it must not write as a secondary), or after RENEW_NOW_DEADLINE_MS in all
   * (the MTA's own wait ends soon after: refused then, the next degrade tries
   * again); the next round comes soon as after any failed renewal.
   */
  async renewNow(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = { passed: false };
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        late.passed = true;
        reject(new VolleyError('ELEASETIMEOUT', `the arbiter lease could not be written within ${RENEW_NOW_DEADLINE_MS} ms (${this.o.arbiter.where})`));
      }, RENEW_NOW_DEADLINE_MS);
    });
    const work = this.renewNowUnbounded(late);
    // Past the deadline nobody awaits it: its failure is counted inside, not thrown at no one.
    work.catch(() => undefined);
    try {
      await Promise.race([work, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async renewNowUnbounded(late: { passed: boolean }): Promise<void> {
    while (this.running) await this.running;
    if (this.stopped) throw new VolleyError('ESTOPPING', 'the arbiter lease is no longer kept (the mirror is stopping)');
    // The round it waited for may have found a higher epoch (superseded) or fenced this node: a secondary writes no primary's lease.
    if (this.o.host.state().role !== 'primary') throw new VolleyError('ENOTPRIMARY', 'this node is no longer the primary: its arbiter lease is not written');
    // Given up on already (the caller refused its barriers): the regular round writes the same state soon enough.
    if (late.passed) return;
    clearTimeout(this.timer);
    const run = this.renew();
    this.running = run.then(
      () => undefined,
      () => undefined,
    );
    try {
      await run;
    } catch (err) {
      this.errors++;
      this.lastError = (err as Error).message;
      this.schedule(this.o.ttlMs / 10);
      throw err;
    } finally {
      this.running = undefined;
    }
    this.schedule(this.o.ttlMs / 3);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.round().finally(() => (this.running = undefined));
    }, ms);
  }

  private async round(): Promise<void> {
    if (this.stopped) return;
    const ttl = this.o.ttlMs;
    let next = this.o.host.state().role === 'primary' ? ttl / 3 : ttl / 5;
    try {
      if (this.o.host.state().role === 'primary') await this.renew();
      else await this.watch();
    } catch (err) {
      this.errors++;
      this.lastError = (err as Error).message;
      this.o.logger.warn({ err: this.lastError, code: errorCode(err), arbiter: this.o.arbiter.where }, 'mirror: arbiter lease round failed');
      // A primary that failed retries soon: it has until the fence timer to succeed.
      if (this.o.host.state().role === 'primary') next = ttl / 10;
    }
    this.schedule(next);
  }

  private async read(): Promise<LeaseRead> {
    const r = await this.o.arbiter.read();
    if (r.lease) this.lastSeen = r.lease;
    return r;
  }

  private async renew(): Promise<void> {
    const s = this.o.host.state();
    const start = this.now();
    if (this.etag !== undefined) {
      try {
        return await this.writeOwn(s.epoch, start, this.etag);
      } catch (err) {
        if (errorCode(err) !== LEASE_CONFLICT) throw err;
        this.etag = undefined;
      }
    }
    // First round, or someone wrote the lease since our last write: look at it.
    const r = await this.read();
    const l = r.lease;
    if (l && l.epoch > s.epoch) {
      this.o.logger.error({ holder: l.holder, epoch: l.epoch }, 'mirror: the arbiter lease names a higher epoch: another node is the primary');
      this.released();
      return this.o.host.superseded(l);
    }
    if (l && l.holder !== this.o.name && l.epoch === s.epoch && l.expires_at > start) {
      // Another node claims this very epoch and holds it: never fight over a live lease.
      this.released();
      return this.o.host.selfFence(`the arbiter lease of epoch ${l.epoch} is held by ${l.holder}`);
    }
    await this.writeOwn(s.epoch, start, r.etag);
  }

  private async writeOwn(epoch: number, start: number, ifMatch: string | undefined): Promise<void> {
    const lease: Lease = { holder: this.o.name, epoch, expires_at: start + this.o.ttlMs, ...(this.o.host.state().peerOutdated ? { peer_outdated: true } : {}) };
    this.etag = await this.o.arbiter.write(lease, ifMatch);
    this.lastSeen = lease;
    this.heldUntil = lease.expires_at;
    this.arm();
  }

  /** The fence fires FENCE_MARGIN before the expiry of the last lease written: a later renewal moves it on. */
  private arm(): void {
    clearTimeout(this.fenceTimer);
    if (this.heldUntil === undefined) return;
    const at = this.heldUntil - this.o.ttlMs * FENCE_MARGIN;
    this.fenceTimer = setTimeout(() => {
      this.fenceTimer = undefined;
      if (this.o.host.state().role !== 'primary') return;
      const why = `the arbiter lease could not be renewed (${this.lastError ?? 'no answer'}); it expires at ${new Date(this.heldUntil ?? 0).toISOString()}`;
      this.released();
      this.o.host.selfFence(why);
    }, Math.max(0, at - this.now()));
  }

  private disarm(): void {
    clearTimeout(this.fenceTimer);
    this.fenceTimer = undefined;
    this.heldUntil = undefined;
  }

  private async watch(): Promise<void> {
    const start = this.now();
    const r = await this.read();
    const l = r.lease;
    // No lease: no primary ever took part in automatic failover; nothing to take over from.
    if (!l || l.expires_at > start) return;
    const refused = this.o.host.cannotTakeOver(l);
    if (refused) {
      this.o.logger.warn({ holder: l.holder, epoch: l.epoch, expired: new Date(l.expires_at).toISOString(), why: refused }, 'mirror: the arbiter lease expired but this node may not take over');
      return;
    }
    const epoch = Math.max(l.epoch, this.o.host.state().epoch) + 1;
    try {
      await this.writeOwn(epoch, start, r.etag);
    } catch (err) {
      if (errorCode(err) === LEASE_CONFLICT) return void this.o.logger.info('mirror: another node took the expired lease first');
      throw err;
    }
    this.o.logger.warn({ from: l.holder, epoch }, 'mirror: the primary\'s lease expired: this node took it');
    this.o.host.tookOver(epoch);
  }
}
