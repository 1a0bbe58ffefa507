// An operator's commands on the queue (the admin port's /queue): retry now,
// purge, a message's story and the summary. Owns what those commands do to
// the retry heap and the destination queues; the records a purge leaves go
// through records/ (AttemptRecorder.purged), and what happens next is the
// engine's pump (`kick`). It opens no connection and takes no permit.
import type { VolleyConfig } from '../../../shared/config/types';
import type { SpoolPartition } from '../../spool/partition';
import { expiresAt } from '../../spool/types';
import type { Destinations } from '../queues/destinations';
import type { Attempt, AttemptRecorder } from '../records/attempt-recorder';
import type { InFlight } from '../records/in-flight';
import type { OperatorHolds } from './operator-holds';
import type { Parking } from './parking';
import { matches, summarise, type QueueSummary, type Selector } from './queue-control';
import type { RetryTimer } from './retry-timer';

/** Messages purged at once: enough to share synced writes, few enough to keep memory flat. */
const PURGE_BATCH = 1000;

export interface QueueCommandsOptions {
  partitions: SpoolPartition[];
  destinations: Destinations;
  inflight: InFlight;
  holds: OperatorHolds;
  parking: Parking;
  retries: RetryTimer;
  recorder: AttemptRecorder;
  now: () => number;
  config: () => VolleyConfig;
  /** Delivery is paused on this node (the engine's pause, or a drain). */
  paused: () => boolean;
  /** Held at start because an interrupted drain may have handed it to another node (engine.start). */
  held: (id: string) => boolean;
  /** Arms the retry timer and pumps the destination queues. */
  kick: () => void;
}

export class QueueCommands {
  constructor(private readonly o: QueueCommandsOptions) {}

  summary(): QueueSummary & { awaitingMirror: number; pausedDestinations: string[] } {
    const all = this.o.partitions.flatMap((p) => [...p.entries()]);
    return { ...summarise(all, this.o.now()), awaitingMirror: this.o.partitions.reduce((n, p) => n + p.unconfirmedCount, 0), pausedDestinations: this.o.holds.list() };
  }

  /**
   * Makes matching messages due now (throttles still apply). Not those held
   * for an interrupted drain: their destination may hold and deliver them.
   */
  retryNow(sel: Selector): number {
    const now = this.o.now();
    let n = 0;
    for (const p of this.o.partitions) {
      for (const e of p.entries()) {
        if (!matches(e, sel) || this.o.inflight.has(e.id) || this.o.held(e.id)) continue;
        e.next = now;
        this.o.retries.push(now, e);
        n++;
      }
    }
    for (const dest of [...this.o.destinations.values()]) {
      if (sel.domain !== undefined && dest.domain !== sel.domain) continue;
      dest.heldUntil = 0;
      this.o.destinations.touch(dest);
    }
    this.o.kick();
    return n;
  }

  /** Removes matching messages, each with a `purged` event per recipient. */
  async purge(sel: Selector): Promise<number> {
    const released = this.releaseQueued(sel);
    let n = 0;
    try {
      for (const p of this.o.partitions) {
        const chosen = [...p.entries()].filter((e) => matches(e, sel));
        // Side by side, not one after another: their events share the attempt
        // log's synced writes (which wait out its commit interval) and their
        // done records the spool's, so a large purge takes seconds, not an
        // interval per message. Checked again per batch: delivery goes on meanwhile.
        for (let i = 0; i < chosen.length; i += PURGE_BATCH) {
          const batch = chosen.slice(i, i + PURGE_BATCH).filter((e) => (released.has(e.id) || !this.o.inflight.has(e.id)) && p.get(e.id) === e);
          // In flight while its records are written (the log's commit interval): a retry
          // that comes meanwhile must not start a delivery of a message being purged (it
          // would go out, and its outcome would then find it gone and park the partition).
          for (const e of batch) {
            if (released.has(e.id)) continue;
            this.o.inflight.add(e.id);
            released.add(e.id);
          }
          // Every write of the batch ends before a failure is told: none is still being purged once it is out of flight.
          const failed = (await Promise.allSettled(batch.map((e) => this.o.recorder.purged(e, p)))).find((r) => r.status === 'rejected');
          if (failed) throw failed.reason;
          n += batch.length;
        }
      }
    } finally {
      // Out of flight only now: until its done record is written, a stale timer must not start it again.
      this.o.inflight.deleteAll(released);
      this.rescheduleUnpurged(released);
    }
    return n;
  }

  /**
   * Released messages a failed purge left in the spool (the attempt log out
   * of room) go back to wait for their time, as any message not in flight:
   * otherwise nothing would ever start them again.
   */
  private rescheduleUnpurged(released: Set<string>): void {
    let any = false;
    for (const p of this.o.partitions) {
      for (const id of released) {
        const e = p.get(id);
        if (!e) continue;
        this.o.retries.push(e.next, e);
        any = true;
      }
    }
    if (any) this.o.kick();
  }

  /**
   * Takes the matching attempts that wait in a destination queue (behind an
   * operator's pause, a throttle or a busy slot) out of it, so a purge can
   * remove them: they count as in flight, but nothing of them is on the wire.
   * Only whole attempts with nothing recorded yet: one whose other domain is
   * being delivered now is left to finish, as any attempt in flight.
   */
  private releaseQueued(sel: Selector): Set<string> {
    const queued = new Map<Attempt, number>();
    for (const dest of this.o.destinations.values()) {
      for (const job of dest.jobs) if (matches(job.attempt.entry, sel)) queued.set(job.attempt, (queued.get(job.attempt) ?? 0) + 1);
    }
    const released = new Set<Attempt>([...queued].filter(([a, jobs]) => jobs === a.pending && a.events.length === 0).map(([a]) => a));
    if (released.size === 0) return new Set();
    for (const dest of [...this.o.destinations.values()]) {
      const before = dest.jobs.length;
      dest.jobs = dest.jobs.filter((j) => !released.has(j.attempt));
      // An emptied queue is dropped; one that still holds mail keeps its hold as it was.
      if (dest.jobs.length === 0 && before > 0) this.o.destinations.touch(dest);
    }
    return new Set([...released].map((a) => a.entry.id));
  }

  /** Where a message is and why it is still queued (its attempts are in the attempt log). */
  describe(id: string): Record<string, unknown> | undefined {
    for (const p of this.o.partitions) {
      const e = p.get(id);
      if (!e) continue;
      const now = this.o.now();
      const held = [...this.o.destinations.values()].filter((d) => d.jobs.some((j) => j.attempt.entry.id === id));
      const maxLifetimeMs = this.o.config().delivery.maxLifetimeMs;
      let why: string;
      if (p.awaitsConfirm(id)) why = 'written here, awaiting the HA mirror\'s confirmation (sync barrier): not deliverable until it answers';
      else if (this.o.held(id)) why = 'held since the start: an interrupted drain may have handed it to another node, which is asked whether it has it (run `volley drain` to settle it)';
      else if (this.o.parking.isParked(e, p)) why = 'its partition starts no delivery until an outcome is recorded (disk full)';
      else if (this.o.inflight.has(id) && held.length === 0) why = 'being delivered now';
      else if (held.some((d) => this.o.holds.holds(d))) why = 'its destination is paused by an operator';
      else if (held.some((d) => d.heldUntil > now)) why = `held by a throttle or backoff until ${new Date(Math.max(...held.map((d) => d.heldUntil))).toISOString()}`;
      else if (held.length > 0) why = 'waiting for a connection to its destination';
      else if (this.o.paused()) why = 'delivery is paused on this node';
      else if (e.next > now) why = `waiting for its next retry at ${new Date(e.next).toISOString()}`;
      else why = 'due now';
      return { id, from: e.from, pending_recipients: e.to, attempts: e.attempts, received: new Date(e.received).toISOString(), expires: new Date(expiresAt(e, maxLifetimeMs)).toISOString(), next_retry: new Date(e.next).toISOString(), vmta: e.vmta, pool: e.pool, size: e.size, why };
    }
    return undefined;
  }
}
