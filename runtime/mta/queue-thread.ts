import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { MessagePort } from 'node:worker_threads';
import type { VolleyConfig } from '../shared/config/types';
import { createLogger } from '../shared/log';
import { RFC5321_CLIENT_TIMEOUTS } from '../shared/smtp/client';
import { AttemptLog } from './delivery/attempt-log';
import { clusterThrottleAuthority } from './delivery/cluster-authority';
import { DeliveryEngine } from './delivery/engine';
import { Router } from './delivery/router';
import { RoutingConnector } from './delivery/routing-connector';
import { LocalAuthority, PrimaryAuthority, type ThrottleAuthority } from './delivery/throttle-authority';
import { Throttles } from './delivery/throttles';
import { Intake } from './intake/intake';
import { IntakeService } from './intake/intake-service';
import type { FromQueue, ToQueue, WorkerStats } from './ipc';
import { metrics, register } from './metrics';
import { Spool } from './spool/spool';
import type { SpoolEntry } from './spool/types';

/** What the worker's main thread hands its queue thread (structured-cloned: plain data only). */
export interface QueueThreadData {
  volleyThread: 'mta-queue';
  config: VolleyConfig;
  persistentPath: string;
  nodeId: string;
  worker: number;
  workers: number;
  /** The worker process has an IPC channel to a primary (throttle counts go there). */
  hasPrimary: boolean;
}

export function isQueueThreadData(d: unknown): d is QueueThreadData {
  return typeof d === 'object' && d !== null && (d as { volleyThread?: unknown }).volleyThread === 'mta-queue';
}

/**
 * The start-up scan parses every envelope once and keeps a small index entry;
 * the garbage it leaves would otherwise sit in the heap (and RSS) until V8
 * gets round to a full collection. One forced collection after the scan
 * returns it at once.
 */
function compactHeap(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/**
 * A worker's queue thread: the spool partitions, intake's durable write, and
 * delivery. It runs beside the listeners' thread so that the two halves of an
 * MTA's per-message work (the inbound SMTP dialogue, and the spool plus the
 * outbound dialogue) use two cores. It speaks the worker's side of the
 * primary protocol (ipc.ts) through its port; the main thread relays it.
 */
export async function runQueueThread(port: MessagePort, options: QueueThreadData): Promise<void> {
  let config = options.config;
  const logger = createLogger({ level: config.log.level, name: `mta-w${options.worker}` }).child({ thread: 'queue' });
  const post = (m: FromQueue): void => port.postMessage(m);
  const spool = await Spool.open({
    root: options.persistentPath,
    worker: options.worker,
    workers: options.workers,
    segmentSize: config.spool.segmentSize,
    fsync: config.spool.fsync,
    logger,
  });
  for (const p of spool.partitions) p.on('fsync', (s: number) => metrics.fsyncSeconds.observe(s));
  logger.info({ partitions: spool.partitions.map((p) => p.dir), queued: spool.size }, 'spool opened');

  const intake = new Intake(spool.home, config);
  const router = new Router({ routes: config.routes, servers: config.resolver.servers });
  const attemptLog = new AttemptLog({
    dir: join(options.persistentPath, 'log', 'attempts'),
    name: `w${options.worker}`,
    maxSize: config.events.attemptLog.maxSize,
    maxAgeMs: config.events.attemptLog.maxAgeMs,
    fsync: config.spool.fsync,
  });
  // With several workers the primary holds the node's throttle counts.
  const primaryAuthority = options.workers > 1 && options.hasPrimary ? new PrimaryAuthority((m) => post(m)) : undefined;
  // Node-wide decisions (the primary's, or this worker's own when it is alone)...
  const throttles = new Throttles(config); // rules for the engine, counts when this worker is alone
  const nodeAuthority: ThrottleAuthority = primaryAuthority ?? new LocalAuthority(throttles);
  // ...and cluster-wide ones for sending IPs held by proxies, which decide for every MTA at once.
  const clusterAuthority = clusterThrottleAuthority(config, nodeAuthority, `${options.nodeId}/w${options.worker}`, logger);
  const authority = clusterAuthority ?? nodeAuthority;
  const engine = new DeliveryEngine({
    partitions: spool.partitions,
    config,
    // Proxies are read at start: a change of the proxy list takes a restart (rolling), not a refresh.
    connector: new RoutingConnector({ proxies: config.proxies, haproxy: config.haproxy, timeouts: { ...RFC5321_CLIENT_TIMEOUTS, connectMs: config.delivery.connectTimeoutMs, greetingMs: config.delivery.greetingTimeoutMs }, logger, name: `${options.nodeId}/w${options.worker}` }),
    router,
    attemptLog,
    logger,
    nodeId: options.nodeId,
    throttles,
    authority,
    bounce: (dsn) => intake.submit({ ...dsn, via: 'smtp', client: { helo: 'dsn' } }),
  });
  intake.on('accepted', (entry: SpoolEntry) => engine.schedule(entry));

  const service = new IntakeService(intake, post, logger);

  const stats = (): WorkerStats => {
    const parts = spool.partitions.map((p) => p.stats());
    const writeError = spool.partitions.find((p) => p.lastWriteError)?.lastWriteError;
    return {
      worker: options.worker,
      queued: spool.size,
      spoolBytes: parts.reduce((n, p) => n + p.bytes, 0),
      spoolSegments: parts.reduce((n, p) => n + p.segments, 0),
      writeError: writeError?.message,
    };
  };
  const report = (): void => {
    const s = stats();
    metrics.spoolMessages.set(s.queued);
    metrics.spoolBytes.set(s.spoolBytes);
    metrics.spoolRecords.set(spool.partitions.reduce((n, p) => n + p.stats().records, 0));
    post({ type: 'stats', stats: s });
  };
  const timer = setInterval(report, 1000);
  timer.unref();

  const query = async (name: string, args: Record<string, string | undefined>): Promise<unknown> => {
    const sel = { domain: args.domain, vmta: args.vmta, id: args.id };
    const whole = Object.values(sel).every((v) => v === undefined);
    switch (name) {
      case 'queue':
        return { ...stats(), ...engine.status(), ...engine.summary() };
      case 'pause':
        if (whole) engine.pause();
        else engine.pauseDestination(sel);
        return { ...engine.status(), pausedDestinations: engine.summary().pausedDestinations };
      case 'resume':
        if (whole) engine.resume();
        else engine.resumeDestination(sel);
        return { ...engine.status(), pausedDestinations: engine.summary().pausedDestinations };
      case 'retry':
        return { retried: engine.retryNow(sel) };
      case 'purge':
        if (whole) throw new Error('purge needs --domain, --vmta or --id');
        return { purged: await engine.purge(sel) };
      case 'message':
        return engine.describe(args.id ?? '') ?? null;
      default:
        throw new Error(`unknown query ${name}`);
    }
  };

  let stopping = false;
  const shutdown = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    await engine.stop();
    clusterAuthority?.close();
    await attemptLog.close();
    await spool.close();
    post({ type: 'stopped' });
    port.close();
  };

  port.on('message', (m: ToQueue) => {
    switch (m.type) {
      case 'submit':
        return service.submit(m.batch);
      case 'metrics':
        void register.getMetricsAsJSON().then((data) => post({ type: 'metrics', seq: m.seq, data }));
        return;
      case 'config':
        try {
          engine.apply(m.config); // first: it is the part that can refuse (DKIM keys)
        } catch (err) {
          logger.error({ err }, 'config refresh refused by this worker; the running config stays');
          return;
        }
        config = m.config;
        intake.apply(config);
        router.apply(config.routes, config.resolver.servers);
        return post({ type: 'config-applied', worker: options.worker });
      case 'query':
        void query(m.query, m.args ?? {}).then(
          (data) => post({ type: 'reply', id: m.id, ok: true, data }),
          (err: Error) => post({ type: 'reply', id: m.id, ok: false, error: err.message }),
        );
        return;
      case 'throttle-reply':
        return primaryAuthority?.onReply(m.id, m.value);
      case 'shutdown':
        return void shutdown();
    }
  });
  report();
  // Ready means taking mail: the queue's timers are built (and the scan's
  // garbage collected) right after, while intake already runs.
  post({ type: 'ready', worker: options.worker });
  setImmediate(() => {
    engine.start();
    compactHeap();
  });
}
