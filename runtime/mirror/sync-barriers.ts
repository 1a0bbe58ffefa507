// The primary's sync barriers (mode sync): the MTA asks, after its local
// fsync, that everything it has written be durable on the secondary before
// it gives a 250. A barrier is answered once a replication scan that
// *started after it arrived* has been acknowledged durable in full; every
// barrier that arrived before that scan started shares it, so many
// concurrent group commits on the primary cost one replication batch.
//
// When no such acknowledgement comes within sync_timeout the policy
// decides: `block` fails the barrier (the MTA answers 451 and drops the
// message), `degrade` answers it (and every later one) at once, after
// `onDegrade` has recorded durably that the secondary is outdated (and told
// the arbiter, which may take a moment: the barriers wait for it); a
// secondary caught up again (`caughtUp`) puts the pair back in sync, and so
// does a change of role (`reset`: a new primary starts in sync).
import type { BarrierAnswer } from '../shared/mirror-sync/protocol';
import type { SyncPolicy } from './config';

export type SyncState = 'sync' | 'blocked' | 'degraded';

export interface SyncBarriersOptions {
  timeoutMs: number;
  policy: SyncPolicy;
  /** Whether this node is the primary now (a secondary refuses barriers). */
  primary: () => boolean;
  /** Start a replication scan soon (the link is idle in its poll wait). */
  kick: () => void;
  /** The secondary missed sync_timeout under policy degrade: record it durably (and tell the arbiter) before any barrier is answered; a throw or rejection refuses the barriers that timed out. */
  onDegrade: (waitedMs: number) => void | Promise<void>;
  now?: () => number;
}

interface Waiter {
  /** The first scan that covers this barrier. */
  need: number;
  arrived: number;
  /** Its sync_timeout passed (policy degrade: it waits for the outdated flag to be recorded). */
  expired?: boolean;
  timer: ReturnType<typeof setTimeout>;
  answer: (a: BarrierAnswer) => void;
}

export interface SyncBarrierStats {
  state: SyncState;
  waiting: number;
  answered: number;
  timeouts: number;
  /** Arrival to answer of the last barrier answered by the secondary's ack, in ms. */
  lastLatencyMs?: number;
}

export class SyncBarriers {
  private started = 0;
  private readonly waiters = new Set<Waiter>();
  private syncState: SyncState = 'sync';
  private readonly now: () => number;
  /** An onDegrade under way: barriers timing out meanwhile wait for its outcome. */
  private degradingNow = false;
  /** Bumped by each change of role (`reset`): a degrade started under one primary term must not finish in the next. */
  private term = 0;
  answered = 0;
  timeouts = 0;
  lastLatencyMs?: number;
  /** Called with each barrier's latency (arrival to an answer the secondary's ack gave). */
  onLatency?: (ms: number) => void;

  constructor(private readonly options: SyncBarriersOptions) {
    this.now = options.now ?? Date.now;
  }

  get state(): SyncState {
    return this.syncState;
  }

  /** A degrade is recording the secondary as outdated: until it is done, nothing may say the secondary caught up. */
  get degrading(): boolean {
    return this.degradingNow;
  }

  /** A degraded pair that restarts is still degraded until its secondary catches up (the durable flag says so). */
  startDegraded(): void {
    this.syncState = 'degraded';
  }

  /** Asked by the MTA: resolves with the answer to send back. */
  request(): Promise<BarrierAnswer> {
    if (!this.options.primary()) return Promise.resolve({ ok: false, reason: 'not-primary', message: 'this node is the secondary of its pair: no mail may be acknowledged here' });
    if (this.syncState === 'degraded') return Promise.resolve({ ok: true, state: 'degraded' });
    return new Promise((answer) => {
      const w: Waiter = { need: this.started + 1, arrived: this.now(), answer, timer: setTimeout(() => this.expire(w), this.options.timeoutMs) };
      this.waiters.add(w);
      this.options.kick();
    });
  }

  /** A barrier waits for a scan that has not started yet: the replication loop must not sleep. */
  needsScan(): boolean {
    for (const w of this.waiters) if (w.need > this.started) return true;
    return false;
  }

  /** A replication scan begins; returns its number (for `durable`). */
  scanStarted(): number {
    return ++this.started;
  }

  /** Everything scan `n` saw is durable on the secondary: answer the barriers it covers. */
  durable(n: number): void {
    if (this.syncState === 'blocked') this.syncState = 'sync';
    for (const w of this.waiters) {
      if (w.need > n) continue;
      const ms = this.now() - w.arrived;
      this.lastLatencyMs = ms;
      this.onLatency?.(ms);
      this.settle(w, { ok: true, state: 'sync' });
    }
  }

  /** The secondary holds everything again: a degraded pair is in sync once more. */
  caughtUp(): void {
    if (this.syncState === 'degraded') this.syncState = 'sync';
  }

  /** The role changed (this node became the primary, or stopped being it): whatever the old pair's state was, the new one starts in sync. */
  reset(): void {
    this.term++;
    this.syncState = 'sync';
  }

  /** No more barriers are answered by acks (the node stopped or was demoted): fail what waits. */
  failAll(message: string): void {
    for (const w of this.waiters) this.settle(w, { ok: false, reason: 'error', message });
  }

  stats(): SyncBarrierStats {
    return { state: this.syncState, waiting: this.waiters.size, answered: this.answered, timeouts: this.timeouts, ...(this.lastLatencyMs !== undefined ? { lastLatencyMs: this.lastLatencyMs } : {}) };
  }

  private expire(w: Waiter): void {
    if (!this.waiters.has(w)) return;
    // No longer the primary (a switchover or demotion that did not fail it): no policy of a primary applies here.
    if (!this.options.primary()) return this.settle(w, { ok: false, reason: 'not-primary', message: 'this node stopped being the primary: no mail may be acknowledged here' });
    this.timeouts++;
    const waited = this.now() - w.arrived;
    if (this.options.policy === 'block') {
      this.syncState = 'blocked';
      return this.settle(w, { ok: false, reason: 'timeout', message: `the secondary did not acknowledge within sync_timeout (${this.options.timeoutMs} ms): not accepted here, try another MTA` });
    }
    w.expired = true;
    void this.degrade(waited);
  }

  /** Degrade: the flag is durable (and the arbiter knows) before the first message is acknowledged without the secondary. */
  private async degrade(waited: number): Promise<void> {
    // One at a time: the one under way answers (or refuses) every barrier that timed out meanwhile.
    if (this.degradingNow) return;
    this.degradingNow = true;
    const term = this.term;
    let failed: Error | undefined;
    try {
      await this.options.onDegrade(waited);
    } catch (err) {
      failed = err as Error;
    } finally {
      this.degradingNow = false;
    }
    // Demoted and promoted again while the record was written: the new term reset peer_outdated and starts in sync, so
    // this degrade's record is gone; answering on it would acknowledge mail alone with nothing saying so. Refuse instead.
    if (!failed && term !== this.term) failed = new Error('the role changed while the secondary was being recorded as outdated');
    if (failed) {
      // Not recorded: acknowledging now could lose mail nobody knows is at risk. Those not timed out yet may still get their ack.
      for (const x of this.waiters) if (x.expired) this.settle(x, { ok: false, reason: 'error', message: `cannot record the secondary as outdated: ${failed.message}` });
      return;
    }
    // Demoted meanwhile: what waited was failed with it, and the new role starts in sync.
    if (!this.options.primary()) return;
    this.syncState = 'degraded';
    for (const x of this.waiters) this.settle(x, { ok: true, state: 'degraded' });
  }

  private settle(w: Waiter, a: BarrierAnswer): void {
    clearTimeout(w.timer);
    this.waiters.delete(w);
    if (a.ok) this.answered++;
    w.answer(a);
  }
}
