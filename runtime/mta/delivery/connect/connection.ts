// The life of one connection to a destination: its route, the throttle's
// pause and connection permit (through the authority; the HAProxy share of a
// limit is computed here from the config), the MX walk that opens the session
// (open-session.ts), the transactions it carries (records/transactions.ts),
// failover to the next MX when the server ends the session early, and the
// brief linger for more work before it QUITs. Owns the count of open
// connections and the lingering ones. It decides nothing about outcomes:
// failures go to records/ as they are.
import type { Logger } from 'pino';
import type { Clock } from '../../../shared/clock';
import type { VolleyConfig } from '../../../shared/config/types';
import type { OutboundSession } from '../../../shared/smtp/connector';
import { average, type Destination, type Destinations } from '../queues/destinations';
import type { Job } from '../records/attempt-recorder';
import { NoRoute, SessionNotOpened, type DeliveryFailure } from '../records/outcomes';
import type { Transactions } from '../records/transactions';
import { mxTargets } from '../routing/mx-targets';
import type { Router } from '../routing/router';
import type { OperatorHolds } from '../scheduler/operator-holds';
import type { ThrottleAuthority } from '../throttle/throttle-authority';
import { throttleKey, type ThrottleKey } from '../throttle/throttle-key';
import type { Throttles } from '../throttle/throttles';
import { openSession, type SessionOpener } from './open-session';

/** How long an open connection waits for the next message before it QUITs. */
const IDLE_MS = 1000;

export interface ConnectionsOptions {
  config: () => VolleyConfig;
  clock: Clock;
  logger: Logger;
  router: Router;
  throttles: Throttles;
  authority: ThrottleAuthority;
  opener: SessionOpener;
  destinations: Destinations;
  holds: OperatorHolds;
  transactions: () => Transactions;
  stopped: () => boolean;
  /** A connection ended while stopping: the jobs a throttle wait put back on its queue are not tried. */
  abandon: (dest: Destination) => void;
  /** Opens connections for the destinations that may have work to start. */
  pump: () => void;
}

export class Connections {
  /** Connections open (or opening) on this engine. */
  active = 0;
  /** Connections waiting for their destination's next message; each function makes one QUIT now. */
  private readonly lingering = new Set<() => void>();

  constructor(private readonly o: ConnectionsOptions) {}

  private now(): number {
    return this.o.clock.now();
  }

  /** One connection for `dest`, from its route to its QUIT. */
  async run(dest: Destination): Promise<void> {
    const { authority, throttles } = this.o;
    const transactions = this.o.transactions();
    const failQueued = (failure: DeliveryFailure): void => transactions.failQueued(dest, failure);
    dest.active++;
    this.active++;
    let session: OutboundSession | undefined;
    let permitKey: ThrottleKey | undefined;
    try {
      const route = await this.o.router.resolve(dest.domain);
      if (route.kind !== 'hosts') return failQueued(new NoRoute(route));
      const destination = throttles.destinationOf(dest.domain, route.hosts.map((h) => h.host));
      const key = throttleKey(dest.source.vmta ?? dest.source.ip ?? '-', destination);
      const haproxy = this.o.config().haproxy;
      const share = haproxy && dest.source.ip && haproxy.frontends.some((f) => f.sendingIp === dest.source.ip) ? 1 / haproxy.mtas : 1;
      const limits = throttles.limitsFor(dest.source.vmta, destination, dest.domain, share);
      const paused = await authority.pausedFor(key);
      if (paused > 0) {
        dest.heldUntil = this.now() + paused;
        return;
      }
      if (!(await authority.tryConnection(key, limits))) {
        // The permit may be held by another worker, whose release this worker
        // never sees: ask again shortly, or at once when a local one frees up.
        dest.heldOnKey = key.id;
        dest.heldUntil = this.now() + 200;
        return;
      }
      permitKey = key;
      const targets = mxTargets(route, this.o.config().delivery.mxAddressLimit);
      let opened: { session: OutboundSession; index: number };
      try {
        opened = await openSession(this.o.opener, route, targets, 0, dest.source, dest.domain);
      } catch (err) {
        const failure = new SessionNotOpened(err);
        const pause = await authority.onTemporaryFailure(key, dest.domain, failure.reply);
        if (pause > 0) dest.heldUntil = this.now() + pause;
        // Every MX refused to talk (a 5xx greeting or EHLO included): deferred, see SessionNotOpened.
        return failQueued(failure);
      }
      const sessionLimit = this.o.config().delivery.mxSessionLimit;
      for (let sessions = 1; ; sessions++) {
        session = opened.session;
        dest.setupMs = average(dest.setupMs, session.info.connectMs);
        const paused = await transactions.run(dest, session, key, limits);
        // A session the server ended early (a 421, a hang-up) with mail still
        // queued: the rest goes to the next MX address in this delivery, as
        // Postfix does, up to mx_session_limit sessions; past it, or when no
        // address is left, the queue waits for the next connection.
        const failover = !session.usable && !paused && !this.o.stopped() && dest.jobs.length > 0 && !this.o.holds.holds(dest);
        if (!failover || (sessionLimit > 0 && sessions >= sessionLimit) || opened.index + 1 >= targets.length) break;
        session.close();
        session = undefined;
        try {
          opened = await openSession(this.o.opener, route, targets, opened.index + 1, dest.source, dest.domain);
        } catch {
          break; // the addresses after it failed too: the queue waits for the next connection, which starts again from the first MX
        }
      }
    } catch (err) {
      this.o.logger.error({ err, destination: dest.key }, 'delivery: connection failed unexpectedly');
    } finally {
      session?.close();
      if (permitKey) {
        authority.releaseConnection(permitKey);
        this.released(permitKey.id);
      }
      dest.active--;
      this.active--;
      // Stopping: a throttle wait may have put a job back on this queue since stop() emptied them all.
      if (this.o.stopped()) this.o.abandon(dest);
      else this.o.destinations.touch(dest);
      this.o.pump();
    }
  }

  /**
   * Lingers briefly for the destination's next message before the connection
   * QUITs, but never while other destinations wait for a connection slot: an
   * idle connection to one domain must not keep mail for the others waiting.
   */
  nextJob(dest: Destination): Promise<Job | undefined> {
    if (this.active >= this.o.config().delivery.concurrency && this.o.destinations.runnable.size > 0) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const done = (job: Job | undefined): void => {
        this.o.clock.clearTimeout(timer);
        this.lingering.delete(giveUp);
        const i = dest.idle.indexOf(done);
        if (i >= 0) dest.idle.splice(i, 1);
        resolve(job);
      };
      const giveUp = (): void => done(undefined);
      const timer = this.o.clock.setTimeout(giveUp, IDLE_MS);
      dest.idle.push(done);
      this.lingering.add(giveUp);
    });
  }

  /** Slots are all taken and mail waits: the connections lingering for more work give theirs up. */
  reclaimLingering(): void {
    let wanted = this.o.destinations.runnable.size;
    for (const giveUp of this.lingering) {
      if (wanted-- <= 0) break;
      giveUp();
    }
  }

  /** A connection permit of the key `id` came free: the destinations waiting on it may try again. */
  private released(id: string): void {
    const { destinations } = this.o;
    for (const set of [destinations.held, destinations.runnable]) {
      for (const dest of set) {
        if (dest.heldOnKey !== id) continue;
        dest.heldOnKey = undefined;
        dest.heldUntil = 0;
        destinations.touch(dest);
      }
    }
  }
}
