// The events side of the MTA primary, wired in one place so primary.ts stays
// short: the primary's own event writer (producer `primary`: the inbound
// listener's reports), one dispatcher per batch sink from its durable cursor,
// the s3 shipper, retention of closed files, the bound's record, per-sink
// metrics, status and replay for the admin API.
import { appendFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Counter, Gauge, Registry } from 'prom-client';
import type { VolleyConfig } from '../../shared/config/types';
import { VolleyError, errorCode } from '../../shared/errors';
import { parseDuration } from '../../shared/units';
import { CursorStore } from './cursor-store';
import { Dispatcher, type DispatcherStatus, type SkipRecord } from './dispatcher';
import { EventLog, eventsDir, listEventFiles } from './event-log';
import { endCursor, type Cursor } from './log-reader';
import { Retention } from './retention';
import { createSinks, type BuiltSinks, type RegistryDeps } from './sinks';
import type { ShipperStats } from './sinks/s3-shipper';
import { readSecretFiles } from './sinks/webhook-signature';
import type { EventSink, SinkStats } from './types';

export interface EventServiceOptions {
  config: VolleyConfig;
  persistentPath: string;
  nodeId: string;
  logger: Logger;
  /** The `<env>` of the S3 keys (default VOLLEY_ENV, else "default"). */
  env?: string;
  /** Tests hand in their own sinks; default the registry (sinks/index.ts). */
  createSinks?: (configs: VolleyConfig['events']['sinks'], deps: RegistryDeps) => BuiltSinks;
  now?: () => number;
  pollMs?: number;
  /** How often closed files are looked at for deletion (default 5 s). */
  retentionMs?: number;
}

export interface SinkStatus extends DispatcherStatus, SinkStats {
  type: string;
  /** A replay running for this sink. */
  replay?: { from: string; started: string };
}

/** The s3 sink's shipper, by its sink name: what it shipped, what waits, and why it last failed. */
export interface ShipperStatus extends ShipperStats {
  sink: string;
  /** Closed files not in S3 yet, counted at this status (GET /events/status only; `volley drain` waits for 0). */
  unshipped?: number;
}

export interface EventsStatus {
  node: string;
  sinks: SinkStatus[];
  shipper?: ShipperStatus;
}

interface Running {
  dispatcher: Dispatcher;
  type: string;
  stats: () => SinkStats;
  replay?: { dispatcher: Dispatcher; from: string; started: string };
}

export class EventService {
  /** The primary's own producer: events it writes itself (inbound reports). */
  readonly writer: EventLog;
  readonly registry = new Registry();
  private readonly dir: string;
  private readonly running = new Map<string, Running>();
  private readonly built: BuiltSinks;
  private readonly retention: Retention;
  private readonly timer: NodeJS.Timeout;
  private readonly now: () => number;
  /** Between `volley drain`'s hand-over and a resume: file sinks close their file once they hold every event. */
  private handingOver = false;

  constructor(private readonly options: EventServiceOptions) {
    const { config, persistentPath, nodeId, logger } = options;
    this.now = options.now ?? Date.now;
    this.dir = eventsDir(persistentPath);
    this.writer = new EventLog({
      dir: this.dir,
      name: 'primary',
      node: nodeId,
      maxSize: config.events.attemptLog.maxSize,
      maxAgeMs: config.events.attemptLog.maxAgeMs,
      commitIntervalMs: config.events.attemptLog.commitIntervalMs,
      fsync: config.spool.fsync,
    });
    const s3 = config.events.sinks.find((s) => s.type === 's3');
    this.retention = new Retention({
      dir: this.dir,
      logger,
      positions: () => [...this.running.values()].flatMap((r) => [r.dispatcher.durablePosition(), ...(r.replay ? [r.replay.dispatcher.durablePosition()] : [])]),
      hasBatchSinks: config.events.sinks.some((s) => s.type !== 's3'),
      shipsEvents: s3?.ship.includes('events') ?? false,
      keepLocal: s3?.keepLocal ?? false,
    });
    const build = options.createSinks ?? createSinks;
    this.built = build(config.events.sinks, { persistentPath, nodeId, logger, now: options.now, env: options.env ?? process.env.VOLLEY_ENV ?? 'default', eventsSource: this.retention });
    const cursors = new CursorStore(this.dir);
    for (const { sink, filter, type } of this.built.batch) {
      // A sink that never ran starts at the end of the log: it takes events
      // from now on (a replay sends it what is older). Read before any worker
      // of this run writes: the primary builds this before forking them.
      let position = cursors.load(sink.name);
      if (!position) {
        position = endCursor(this.dir);
        const name = sink.name;
        // Not fatal if it fails: the dispatcher saves it again with its first batch.
        cursors.save(name, position).catch((err: unknown) => logger.error({ err, sink: name }, 'events: could not save a new sink cursor'));
      }
      const dispatcher = new Dispatcher({
        sink,
        dir: this.dir,
        filter,
        position,
        commit: (c, acked) => cursors.save(sink.name, c, acked),
        acked: cursors.loadAcked(sink.name),
        maxQueue: config.events.maxQueue,
        onSkip: (r) => this.recordSkip(r),
        logger,
        now: options.now,
        pollMs: options.pollMs,
      });
      this.running.set(sink.name, { dispatcher, type, stats: () => sink.stats() });
    }
    this.timer = setInterval(() => void this.retention.sweep().catch((err: unknown) => logger.error({ err }, 'events: retention failed')), options.retentionMs ?? 5000);
    this.timer.unref();
    this.metrics();
  }

  /**
   * A config refresh: each running webhook sink signs with the keys its
   * secret_files hold now, so a webhook secret rotated on disk (`volley
   * secret-files fetch`) takes effect without a restart, as DKIM keys do.
   * Every file is read before any sink changes: one that cannot be read
   * throws, naming the sink and the file, and the refresh is rejected with the
   * old keys in use. A sink the new config removes or adds, and its other
   * settings, still take effect at the next start.
   */
  reloadSecrets(config: VolleyConfig): void {
    const updates: [EventSink, Buffer[]][] = [];
    for (const { sink, type } of this.built.batch) {
      const next = config.events.sinks.find((s) => s.name === sink.name);
      if (type !== 'webhook' || next?.type !== 'webhook' || !sink.setSigningKeys) continue;
      try {
        updates.push([sink, readSecretFiles(next.secretFiles)]);
      } catch (err) {
        throw new VolleyError(errorCode(err) ?? 'EWEBHOOKSECRET', `events.sinks "${sink.name}": ${(err as Error).message}`, { cause: err });
      }
    }
    for (const [sink, keys] of updates) sink.setSigningKeys?.(keys);
  }

  start(): void {
    for (const r of this.running.values()) r.dispatcher.start();
    this.built.shipper?.start();
    this.options.logger.info({ sinks: [...this.running.keys()], shipper: this.built.shipper !== undefined }, 'events: dispatchers started');
  }

  /** Deletes closed files nothing needs any more (also on a timer). */
  sweep(): Promise<void> {
    return this.retention.sweep();
  }

  async status(): Promise<EventsStatus> {
    const sinks: SinkStatus[] = [];
    for (const [, r] of this.running) {
      const st = r.stats();
      sinks.push({
        ...(await r.dispatcher.status()),
        type: r.type,
        delivered: st.delivered,
        deliveredEvents: st.deliveredEvents,
        retries: st.retries,
        deadLettered: st.deadLettered,
        lastSuccess: st.lastSuccess,
        lastError: st.lastError,
        replay: r.replay && { from: r.replay.from, started: r.replay.started },
      });
    }
    if (this.handingOver) this.closeCaughtUpFiles(sinks);
    const shipper = this.shipperStatus();
    // Counted after closeCaughtUpFiles: a file it just closed is waiting for S3 in this same answer.
    const unshipped = await this.built.shipper?.unshipped?.();
    return { node: this.options.nodeId, sinks, shipper: shipper && (unshipped === undefined ? shipper : { ...shipper, unshipped }) };
  }

  /**
   * `volley drain`, once no attempt is in flight: the primary's own event file
   * is closed and a shipping round started now, so the last events go to S3
   * (which takes closed files only) while the drain waits for them; the
   * workers close theirs on the same request.
   */
  async handOver(): Promise<void> {
    this.handingOver = true;
    await this.writer.closeCurrent();
    void this.built.shipper?.shipNow?.();
  }

  /** `volley drain` gave up and resumed the node: file sinks rotate by size and age again, as before. */
  endHandOver(): void {
    this.handingOver = false;
  }

  /**
   * During a hand-over, a SQLite sink's open file holds the node's last rows,
   * and S3 takes closed files only: once its dispatcher has every event
   * delivered (nothing unread, nothing in flight) the file is closed and a
   * shipping round started. Done here, where `volley drain` looks (it polls
   * this status until nothing waits, unshipped included), so the answer that
   * shows the sink caught up also counts the file it closed as unshipped.
   */
  private closeCaughtUpFiles(sinks: readonly SinkStatus[]): void {
    let closed = false;
    for (const { sink } of this.built.batch) {
      const st = sinks.find((s) => s.sink === sink.name);
      if (!sink.handOver || !st || st.waitingEvents > 0 || st.waitingBytes > 0 || st.inFlightBatches > 0) continue;
      if (sink.handOver()) closed = true;
    }
    if (closed) void this.built.shipper?.shipNow?.();
  }

  private shipperStatus(): ShipperStatus | undefined {
    const s3 = this.options.config.events.sinks.find((s) => s.type === 's3');
    return this.built.shipper && s3 ? { sink: s3.name, ...this.built.shipper.stats() } : undefined;
  }

  /** For /readyz: detail only. A sink behind never makes the node unready: mail keeps flowing. */
  async readiness(): Promise<{ sinks: Record<string, { waiting: number; oldest_age_s: number; skipped_events: number; last_skip?: SkipRecord }> }> {
    const out: Record<string, { waiting: number; oldest_age_s: number; skipped_events: number; last_skip?: SkipRecord }> = {};
    for (const s of (await this.status()).sinks) out[s.sink] = { waiting: s.waitingEvents, oldest_age_s: Math.round(s.oldestAgeSeconds), skipped_events: s.skippedEvents, last_skip: s.lastSkip };
    return { sinks: out };
  }

  /**
   * Sends a batch sink again what it acknowledged since `from` (ISO time, or
   * a duration ago such as 2h), from the files still on the node. Its own
   * cursor does not move: the replay reads with one of its own, held in
   * memory, up to where the sink's cursor stands (what is past it the sink
   * gets anyway). A restart ends a replay; run it again.
   */
  replay(sinkName: string, from: string): { sink: string; from: string; until: Cursor; oldestFile?: string } {
    const r = this.running.get(sinkName);
    if (!r) throw new VolleyError('ENOSINK', `no batch sink named "${sinkName}" (${[...this.running.keys()].join(', ') || 'none configured'})`);
    if (r.replay) throw new VolleyError('EREPLAYING', `a replay of "${sinkName}" from ${r.replay.from} is still running`);
    const fromMs = parseFrom(from, this.now());
    const until = r.dispatcher.position();
    const start = replayStart(this.dir, fromMs);
    const dispatcher = new Dispatcher({
      sink: this.built.batch.find((b) => b.sink.name === sinkName)!.sink,
      dir: this.dir,
      filter: this.built.batch.find((b) => b.sink.name === sinkName)!.filter,
      position: start,
      until,
      from: fromMs,
      logger: this.options.logger,
      now: this.options.now,
      pollMs: this.options.pollMs,
    });
    const fromIso = new Date(fromMs).toISOString();
    r.replay = { dispatcher, from: fromIso, started: new Date(this.now()).toISOString() };
    this.options.logger.info({ sink: sinkName, from: fromIso }, 'events: replay started');
    dispatcher.start();
    void dispatcher.finished.then(async () => {
      await dispatcher.close();
      if (r.replay?.dispatcher === dispatcher) r.replay = undefined;
      this.options.logger.info({ sink: sinkName, from: fromIso }, 'events: replay finished');
    });
    const oldest = Object.values(start).map((p) => p.file).sort()[0];
    return { sink: sinkName, from: fromIso, until, oldestFile: oldest };
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.running.values()].map(async (r) => {
      // Sinks reject what is in flight when closed: the dispatchers must stop first, so none of it is offered again.
      const closing = Promise.all([r.dispatcher.close(), r.replay?.dispatcher.close()]);
      const sink = this.built.batch.find((b) => b.sink.name === r.dispatcher.name)?.sink;
      await sink?.close();
      await closing;
    }));
    await this.built.shipper?.close();
    await this.writer.close();
  }

  /** The bound's durable record: one JSON line in `<events>/skipped.jsonl`, synced. */
  private async recordSkip(r: SkipRecord): Promise<void> {
    const path = join(this.dir, 'skipped.jsonl');
    await appendFile(path, `${JSON.stringify(r)}\n`);
    const fh = await open(path, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Per-sink metrics on the primary's /metrics, read from one status per scrape. */
  private metrics(): void {
    let cached: { at: number; value: Promise<EventsStatus> } | undefined;
    const snapshot = (): Promise<EventsStatus> => {
      const t = Date.now();
      if (!cached || t - cached.at > 500) cached = { at: t, value: this.status() };
      return cached.value;
    };
    const gauge = (name: string, help: string, pick: (s: SinkStatus) => number): void => {
      new Gauge({
        name, help, labelNames: ['sink'], registers: [this.registry],
        async collect() {
          this.reset();
          for (const s of (await snapshot()).sinks) this.set({ sink: s.sink }, pick(s));
        },
      });
    };
    const counter = (name: string, help: string, pick: (s: SinkStatus) => number): void => {
      new Counter({
        name, help, labelNames: ['sink'], registers: [this.registry],
        async collect() {
          this.reset();
          for (const s of (await snapshot()).sinks) this.inc({ sink: s.sink }, pick(s));
        },
      });
    };
    gauge('volley_events_waiting', 'Events not yet acknowledged by the sink (unread ones estimated from bytes)', (s) => s.waitingEvents);
    gauge('volley_events_waiting_bytes', 'Event-log bytes the sink has not read', (s) => s.waitingBytes);
    gauge('volley_events_oldest_age_seconds', 'Age of the oldest event the sink has not acknowledged', (s) => s.oldestAgeSeconds);
    counter('volley_events_delivered_total', 'Events the sink acknowledged', (s) => s.deliveredEvents);
    counter('volley_events_retries_total', 'Batch retries', (s) => s.retries);
    counter('volley_events_dead_lettered_total', 'Batches given up on and written to the dead-letter file', (s) => s.deadLettered);
    counter('volley_events_skipped_total', 'Events skipped because the sink fell behind past events.max_queue', (s) => s.skippedEvents);
    // The s3 sink ships files, not events: series of its own, read from the shipper's in-memory stats at each scrape.
    const read = () => this.shipperStatus();
    const shipperGauge = (name: string, help: string, pick: (s: ShipperStatus) => number | undefined): void => {
      new Gauge({
        name, help, labelNames: ['sink'], registers: [this.registry],
        collect() {
          this.reset();
          const st = read();
          const v = st && pick(st);
          if (st && v !== undefined) this.set({ sink: st.sink }, v);
        },
      });
    };
    const shipperCounter = (name: string, help: string, pick: (s: ShipperStatus) => number): void => {
      new Counter({
        name, help, labelNames: ['sink'], registers: [this.registry],
        collect() {
          this.reset();
          const st = read();
          if (st) this.inc({ sink: st.sink }, pick(st));
        },
      });
    };
    shipperCounter('volley_events_s3_files_shipped_total', 'Closed files S3 confirmed (checksum verified) since the start', (s) => s.filesShipped);
    shipperCounter('volley_events_s3_bytes_shipped_total', 'Bytes uploaded for them (gzipped when gzip is on)', (s) => s.bytesShipped);
    shipperGauge('volley_events_s3_files_waiting', 'Closed files offered at the last round and not shipped yet', (s) => s.filesWaiting);
    shipperGauge('volley_events_s3_failed_rounds', 'Shipping rounds failed in a row (0 once one succeeds); the error is in GET /events/status', (s) => s.failures);
    shipperGauge('volley_events_s3_last_success_timestamp_seconds', 'When S3 last confirmed a file', (s) => (s.lastSuccess ? Date.parse(s.lastSuccess) / 1000 : undefined));
  }
}

/** An ISO time, or a duration before now ("2h"). */
export function parseFrom(from: string, now: number): number {
  const t = Date.parse(from);
  if (/^\d{4}-\d\d-\d\d/.test(from) && !Number.isNaN(t)) return t;
  try {
    return now - parseDuration(from);
  } catch {
    throw new VolleyError('EBADTIME', `"${from}" is neither an ISO 8601 time (2026-12-05T03:00:00Z) nor a duration ago (2h)`);
  }
}

/**
 * Where a replay from `from` starts: each producer's first file that may hold
 * an event at or after it. A file's events were all written before the next
 * file was started, so a file whose successor started before `from` is passed.
 */
function replayStart(dir: string, from: number): Cursor {
  const out: Cursor = {};
  for (const [producer, files] of listEventFiles(dir)) {
    let i = 0;
    while (i < files.length - 1 && startedAt(files[i + 1].name) < from) i++;
    out[producer] = { file: files[i].name, offset: 0 };
  }
  return out;
}

function startedAt(name: string): number {
  const m = /\.(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)(\d{3})Z-/.exec(name);
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6], +m[7]) : 0;
}
