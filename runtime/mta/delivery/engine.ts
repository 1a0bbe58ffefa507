// The delivery coordinator: wires the parts and runs the pump. Due mail from
// the retry heap (scheduler/) becomes an attempt and its jobs (records/
// attempt-jobs.ts) in per-destination queues (queues/); the pump gives the
// destinations that want work a connection (connect/connection.ts) within the
// node's concurrency, holds those behind a throttle or an operator's pause and
// wakes them when that ends (scheduler/held-mail.ts); each transaction's
// result goes to records/. Each folder's README.md says what it owns and what
// it may not touch; this file owns start, stop, pause and the config's apply.
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../../shared/clock';
import type { VolleyConfig } from '../../shared/config/types';
import type { SpoolPartition } from '../spool/partition';
import type { SpoolEntry } from '../spool/types';
import type { EventLog } from '../events/event-log';
import { AttemptRecorder } from './records/attempt-recorder';
import { beginAttempt } from './records/attempt-jobs';
import { Transactions } from './records/transactions';
import { Connections } from './connect/connection';
import { DkimSigner } from './dkim/dkim';
import type { Connector } from '../../shared/smtp/connector';
import { Destinations, wantsConnection, type Destination } from './queues/destinations';
import { RetryTimer } from './scheduler/retry-timer';
import { HoldWake, expireHeld } from './scheduler/held-mail';
import { Parking } from './scheduler/parking';
import { OperatorHolds } from './scheduler/operator-holds';
import type { QueueSummary, Selector } from './scheduler/queue-control';
import { QueueCommands } from './scheduler/queue-commands';
import { InFlight } from './records/in-flight';
import type { Router } from './routing/router';
import { LocalAuthority, type ThrottleAuthority } from './throttle/throttle-authority';
import { Throttles } from './throttle/throttles';
import { VmtaPicker } from './routing/vmta-picker';
import { verpFromConfig, type Verp } from './records/verp';
import { TlsPolicyResolver } from './tls-policy/resolver';
import { SessionResults } from './tls-policy/session-results';
import type { TlsRptStore } from './tls-policy/tls-rpt-store';

export interface EngineOptions {
  partitions: SpoolPartition[];
  config: VolleyConfig;
  connector: Connector;
  router: Router;
  attemptLog: EventLog;
  logger: Logger;
  nodeId: string;
  /** Time and timers (the system's when absent): tests drive the engine on jest's fake timers through it. */
  clock?: Clock;
  /** The throttle rules (and, with no authority, the counts); made from the config when absent. */
  throttles?: Throttles;
  /** Where throttle permits come from; `throttles` when absent. */
  authority?: ThrottleAuthority;
  /** Queues a bounce (DSN) like any other message; needed only with delivery.dsn. */
  bounce?: (dsn: { from: string; to: string[]; message: Buffer }) => Promise<unknown>;
  /** How long an outcome that could not be recorded waits before it is written again (default 1 s). */
  recordRetryMs?: number;
  /** How soon a deferral caused only by the proxy link is retried (default PROXY_LINK_RETRY_MS). */
  proxyLinkRetryMs?: number;
  /** The per-MX TLS decision (DANE, MTA-STS, config); made from the config when absent. */
  tlsPolicy?: TlsPolicyResolver;
  /** Where each session's TLS result is counted for TLS-RPT; none when absent. */
  tlsReport?: TlsRptStore;
}

/** Connections one destination queue may open at most, whatever its throttle allows. */
const DESTINATION_CONNECTION_CAP = 1000;

/**
 * Delivers what this worker's partitions hold. Deferred mail waits in a
 * min-heap keyed by its next-retry time (only references to the spool index:
 * a million waiting messages cost no more than their index entries); due mail
 * becomes jobs in per-destination queues, drained by connections that carry
 * several messages each.
 */
export class DeliveryEngine {
  private config: VolleyConfig;
  private readonly picker: VmtaPicker;
  readonly throttles: Throttles;
  private readonly authority: ThrottleAuthority;
  private signer: DkimSigner;
  private verp?: Verp;
  private readonly recorder: AttemptRecorder;
  private readonly holdWake: HoldWake;
  private readonly retries: RetryTimer;
  private readonly destinations = new Destinations();
  private readonly inflight = new InFlight();
  private stopped = false;
  private paused = false;
  /** Held at start for an interrupted drain (`start`): not the node's to deliver until `schedule` is called for it. */
  private held = new Set<string>();
  private readonly holds = new OperatorHolds();
  private readonly clock: Clock;
  private readonly now: () => number;
  /** Mail behind outcomes that could not be recorded (a full disk). */
  private readonly parking: Parking;
  private readonly tlsPolicy: TlsPolicyResolver;
  private readonly tlsResults: SessionResults;
  private readonly commands: QueueCommands;
  private readonly transactions: Transactions;
  private readonly connections: Connections;

  constructor(private readonly options: EngineOptions) {
    this.config = options.config;
    this.picker = new VmtaPicker(options.config);
    this.clock = options.clock ?? systemClock;
    this.now = () => this.clock.now();
    this.throttles = options.throttles ?? new Throttles(options.config, this.now);
    this.authority = options.authority ?? new LocalAuthority(this.throttles);
    this.signer = new DkimSigner(options.config.dkim);
    this.verp = verpFromConfig(options.config.inbound);
    this.tlsPolicy = options.tlsPolicy ?? new TlsPolicyResolver({ config: options.config, logger: options.logger, now: this.now });
    this.tlsResults = new SessionResults(options.logger, options.tlsReport);
    this.parking = new Parking(this.clock, (entries) => {
      for (const e of entries) this.retries.push(e.next, e);
      this.arm();
    });
    this.holdWake = new HoldWake(this.clock, () => this.wake());
    this.retries = new RetryTimer(this.clock, () => !this.stopped && !this.paused, (entry, now) => this.due(entry, now), () => this.pump());
    this.recorder = new AttemptRecorder({
      config: options.config,
      attemptLog: options.attemptLog,
      logger: options.logger,
      nodeId: options.nodeId,
      clock: this.clock,
      bounce: options.bounce,
      settled: (entry, partition, next) => this.settled(entry, partition, next),
      unrecorded: (partition, held) => this.parking.onUnrecorded(partition, held),
      retryMs: options.recordRetryMs,
      proxyLinkRetryMs: options.proxyLinkRetryMs,
    });
    this.transactions = new Transactions({
      config: () => this.config,
      signer: () => this.signer,
      now: this.now,
      authority: this.authority,
      recorder: this.recorder,
      parking: this.parking,
      destinations: this.destinations,
      stopped: () => this.stopped,
      pump: () => this.pump(),
      nextJob: (dest) => this.connections.nextJob(dest),
    });
    this.connections = new Connections({
      config: () => this.config,
      clock: this.clock,
      logger: options.logger,
      router: options.router,
      throttles: this.throttles,
      authority: this.authority,
      opener: { connector: options.connector, tlsPolicy: this.tlsPolicy, tlsResults: this.tlsResults },
      destinations: this.destinations,
      holds: this.holds,
      transactions: () => this.transactions,
      stopped: () => this.stopped,
      abandon: (dest) => this.abandon(dest),
      pump: () => this.pump(),
    });
    this.commands = new QueueCommands({
      partitions: options.partitions,
      destinations: this.destinations,
      inflight: this.inflight,
      holds: this.holds,
      parking: this.parking,
      retries: this.retries,
      recorder: this.recorder,
      now: this.now,
      config: () => this.config,
      paused: () => this.paused,
      held: (id) => this.held.has(id),
      kick: () => {
        this.arm();
        this.pump();
      },
    });
  }

  /**
   * `held`: ids an interrupted drain may have handed to another node (its
   * journal says so); they are not scheduled until `schedule` is called for
   * them, once that node said whether it has them (drain/source/reconcile.ts).
   */
  start(held?: ReadonlySet<string>): void {
    this.held = new Set(held);
    this.holdWake.start();
    for (const partition of this.options.partitions) {
      const entries = held && held.size > 0 ? [...partition.entries()].filter((e) => !held.has(e.id)) : partition.entries();
      this.retries.pushAll(entries);
    }
    this.arm();
  }

  /** Throws (keeping the old config) when a DKIM key or the VERP key of the new one cannot be loaded. */
  apply(config: VolleyConfig): void {
    const signer = new DkimSigner(config.dkim);
    this.verp = verpFromConfig(config.inbound);
    this.signer = signer;
    this.recorder.apply(config);
    this.config = config;
    this.picker.apply(config);
    this.tlsPolicy.apply(config);
    this.throttles.apply(config);
  }

  /** Holds all delivery (new attempts wait; attempts in flight finish). */
  pause(): void {
    this.paused = true;
    this.retries.disarm();
  }

  /**
   * `volley drain`: holds all delivery and gives back the jobs that wait for
   * a slot, a throttle or an operator's pause (abandoned as on a stop: their
   * messages wait for their turn as they were). Such a job never starts while
   * paused, so counted in flight it would make the drain wait for it forever;
   * only transactions under way finish.
   */
  pauseForDrain(): void {
    this.pause();
    this.abandonQueued();
  }

  resume(): void {
    this.paused = false;
    this.arm();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Holds one domain and/or VMTA; its mail waits in its queue. */
  pauseDestination(sel: Selector): void {
    this.holds.pause(sel);
  }

  resumeDestination(sel: Selector): void {
    this.holds.resume(sel);
    this.destinations.release(this.now());
    this.pump();
  }

  summary(): QueueSummary & { awaitingMirror: number; pausedDestinations: string[] } {
    return this.commands.summary();
  }

  /** Makes matching messages due now (throttles still apply). */
  retryNow(sel: Selector): number {
    return this.commands.retryNow(sel);
  }

  /** Removes matching messages, each with a `purged` event per recipient. */
  purge(sel: Selector): Promise<number> {
    return this.commands.purge(sel);
  }

  /** Where a message is and why it is still queued (its attempts are in the attempt log). */
  describe(id: string): Record<string, unknown> | undefined {
    return this.commands.describe(id);
  }

  /** A newly accepted message: try it at once. */
  schedule(entry: SpoolEntry): void {
    // A held message scheduled is released (its destination said it does not have it).
    this.held.delete(entry.id);
    this.retries.push(entry.next, entry);
    this.arm();
  }

  status(): { paused: boolean; waiting: number; inflight: number; unrecorded: number; parked: number; connections: number; destinations: { key: string; queued: number; active: number; stalled: number }[] } {
    const { unrecorded, parked } = this.parking.counts();
    return {
      paused: this.paused,
      waiting: this.retries.size,
      inflight: this.inflight.size,
      unrecorded,
      parked,
      connections: this.connections.active,
      destinations: [...this.destinations.values()].map((d) => ({ key: d.key, queued: d.jobs.length, active: d.active, stalled: d.stalled })),
    };
  }

  /** Stops starting new work and resolves when the work in flight has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.retries.disarm();
    this.holdWake.stop();
    this.parking.stop();
    for (const dest of this.destinations.values()) dest.idle.splice(0).forEach((wake) => wake(undefined));
    this.abandonQueued();
    this.recorder.stop();
    await this.inflight.empty();
  }

  /**
   * Stopping: jobs still queued (behind a throttle, a pause or a busy slot)
   * are not tried. Their recipients stay in the spool as they were, with no
   * event, and go after the restart; only transactions in flight finish.
   */
  private abandonQueued(): void {
    for (const dest of [...this.destinations.values()]) this.abandon(dest);
  }

  private abandon(dest: Destination): void {
    for (const job of dest.jobs.splice(0)) this.recorder.abandon(job);
    this.destinations.touch(dest);
  }

  // --- timing ----------------------------------------------------------------

  private arm(): void {
    this.retries.arm();
  }

  /** A message whose retry time has come: an attempt begins, or waits parked behind its partition. */
  private due(entry: SpoolEntry, now: number): boolean {
    const partition = entry.owner as SpoolPartition;
    // A stale heap item: the message was finished or rescheduled since.
    if (partition.get(entry.id) !== entry || this.inflight.has(entry.id) || entry.next > now) return false;
    if (this.parking.mayDeliver(partition)) this.begin(entry, partition);
    else this.parking.park(entry, partition);
    return true;
  }

  // --- attempts --------------------------------------------------------------

  private begin(entry: SpoolEntry, partition: SpoolPartition): void {
    this.inflight.add(entry.id);
    beginAttempt(entry, partition, { picker: this.picker, verp: this.verp, destinations: this.destinations, recorder: this.recorder });
  }

  /** Opens connections for the destinations that may have work to start. */
  private pump(): void {
    if (this.stopped) return;
    const now = this.now();
    const limit = this.config.delivery.concurrency;
    for (const dest of this.destinations.runnable) {
      if (dest.heldUntil > now || this.holds.holds(dest)) {
        this.destinations.hold(dest);
        if (dest.heldUntil > now) this.holdWake.note(dest.heldUntil);
        continue;
      }
      // The rest stay runnable: the next connection to end pumps again.
      if (this.connections.active >= limit) {
        this.connections.reclaimLingering();
        break;
      }
      // Another connection only when every open one that can take work already has a message waiting.
      while (wantsConnection(dest) && dest.active < DESTINATION_CONNECTION_CAP && this.connections.active < limit) void this.connections.run(dest);
      if (!wantsConnection(dest) || dest.active >= DESTINATION_CONNECTION_CAP) {
        this.destinations.runnable.delete(dest);
        if (dest.jobs.length === 0 && dest.active === 0) this.destinations.remove(dest);
      }
    }
    this.holdWake.arm();
  }

  /** Expires what waited too long behind a hold, lifts the holds that ended, and pumps. */
  private wake(): void {
    const now = this.now();
    expireHeld(this.destinations, this.holds, now, this.config.delivery.maxLifetimeMs, (job, dest, failure) => this.transactions.recordFailure(job, dest, failure));
    this.destinations.release(now);
    for (const dest of this.destinations.held) if (dest.heldUntil > now) this.holdWake.note(dest.heldUntil);
    this.pump();
  }

  /** An attempt's outcome is durable: the message is no longer in flight, and waits for its retry if it has one. */
  private settled(entry: SpoolEntry, partition: SpoolPartition, next: number | undefined): void {
    this.inflight.delete(entry.id);
    if (next !== undefined && partition.get(entry.id) === entry) this.schedule(entry);
  }
}
