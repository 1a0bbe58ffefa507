import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from 'pino';
import type { VolleyConfig } from '../shared/config/types';
import { VolleyError } from '../shared/errors';
import { loadTls } from '../shared/tls-files';
import { EventLog, eventsDir } from './events/event-log';
import { RoutingConnector } from './delivery/connect/routing-connector';
import { mxTrust } from '../shared/smtp/mx-trust';
import { RFC5321_CLIENT_TIMEOUTS } from '../shared/smtp/client';
import { DeliveryEngine } from './delivery/engine';
import { clusterThrottleAuthority } from './delivery/throttle/cluster-authority';
import { LocalAuthority, PrimaryAuthority, type ThrottleAuthority } from './delivery/throttle/throttle-authority';
import { Throttles } from './delivery/throttle/throttles';
import { Router } from './delivery/routing/router';
import { startTlsRpt } from './delivery/tls-policy/tls-rpt-service';
import { TlsPolicyResolver, stsCacheFile } from './delivery/tls-policy/resolver';
import { HttpApi } from './intake/http-api';
import { Intake } from './intake/intake';
import { MirrorSyncClient } from '../shared/mirror-sync/client';
import { SmtpListener } from './intake/smtp-listener';
import { reportDrainHeld, storeDrained } from './drain/store';
import type { FromWorker, ToWorker, WorkerStats } from './ipc';
import { metrics } from './metrics';
import { Spool } from './spool/spool';
import { heldAtStart } from './drain/source/reconcile';
import type { SpoolEntry } from './spool/types';

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

export interface Binds {
  smtp: Record<string, { address: string; port: number }>;
  http?: { address: string; port: number };
}

export interface WorkerOptions {
  /** The config the primary validated and runs (configFromPrimary); never read from the file here. */
  config: VolleyConfig;
  persistentPath: string;
  nodeId: string;
  worker: number;
  workers: number;
  binds: Binds;
  logger: Logger;
}

/**
 * Asks the primary for the config it runs. A worker restarted after the file
 * on disk was broken (or changed and not yet refreshed) must run what the
 * primary validated, not crash-loop on the file or run a config the rest of
 * the node does not.
 */
export function configFromPrimary(worker: number): Promise<VolleyConfig> {
  return new Promise((resolve, reject) => {
    if (!process.send) return reject(new VolleyError('EWORKER', 'an MTA worker must be started by its primary'));
    const onMessage = (m: ToWorker): void => {
      if (m.type !== 'config') return;
      process.off('message', onMessage);
      resolve(m.config);
    };
    process.on('message', onMessage);
    process.send({ type: 'config-request', worker } satisfies FromWorker);
  });
}

/**
 * Stops on SIGTERM, which systemd sends to every process of the unit at once
 * (KillMode=control-group), not just the primary: from the moment a worker
 * starts, a SIGTERM means "stop gracefully", never an abrupt exit. Returns
 * whether one has come, and lets the worker say what to do once it can.
 */
function onTerminate(worker: number): { requested: () => boolean; then: (stop: () => void) => void } {
  let requested = false;
  let stop: (() => void) | undefined;
  process.on('SIGTERM', () => {
    if (requested) return;
    requested = true;
    // Tell the primary first, so its log says why this worker went (it restarts it unless the node stops).
    process.send?.({ type: 'stopping', worker, signal: 'SIGTERM' } satisfies FromWorker);
    stop?.();
  });
  return { requested: () => requested, then: (s) => (stop = s) };
}

/** A worker process: takes its config from the primary, then runs. */
export async function startWorker(options: Omit<WorkerOptions, 'config' | 'logger'> & { logger: (config: VolleyConfig) => Logger }): Promise<void> {
  const terminate = onTerminate(options.worker);
  const config = await configFromPrimary(options.worker);
  await runWorker({ ...options, config, logger: options.logger(config) }, terminate);
}

/**
 * One MTA worker: owns its spool partitions, serves the shared SMTP and HTTP
 * listeners (the kernel spreads connections over workers), and delivers what
 * its partitions hold. Talks to the primary only through `ipc.ts` messages.
 */
export async function runWorker(options: WorkerOptions, terminate = onTerminate(options.worker)): Promise<void> {
  const { logger } = options;
  let config = options.config;
  const spool = await Spool.open({
    root: options.persistentPath,
    worker: options.worker,
    workers: options.workers,
    segmentSize: config.spool.segmentSize,
    fsync: config.spool.fsync,
    // Under a sync mirror the barrier is asked once a group commit is in the file, and the local fsync runs alongside it.
    syncAfterWrite: config.mirror?.mode === 'sync',
    logger,
    // Read at start: a refresh that changes min_free or the reserve takes a restart.
    space: { minFree: config.spool.minFree, reserve: config.spool.reserve },
  });
  for (const p of spool.partitions) p.on('fsync', (s: number) => metrics.fsyncSeconds.observe(s));
  logger.info({ partitions: spool.partitions.map((p) => p.dir), queued: spool.size }, 'spool opened');

  // Under a sync HA mirror no message is acknowledged before the secondary holds it (read at start: a change takes a restart).
  const mirrorSync = config.mirror?.mode === 'sync' ? new MirrorSyncClient({ socket: config.mirror.syncSocket ?? join(options.persistentPath, 'mirror', 'sync.sock'), timeoutMs: config.mirror.timeoutMs }) : undefined;
  const intake = new Intake(spool.home, config, mirrorSync);
  let withdrawnLogged = 0;
  let withdrawnQuiet = 0;
  intake.on('withdrawn', (id: string, why: string, failed?: Error, unmirrored?: Error) => {
    // Refused and withdrawn is the policy working: one line a second at most. A withdrawal that failed always says so.
    if (failed) return logger.error({ id, why, err: failed }, 'mirror sync: a message the mirror could not confirm was refused (451) but could NOT be withdrawn: it stays queued here, held from delivery until a restart');
    if (unmirrored) metrics.withdrawalsUnmirrored.inc();
    if (Date.now() - withdrawnLogged < 1000) return void withdrawnQuiet++;
    logger.warn({ id, why, alsoSinceLastLine: withdrawnQuiet }, 'mirror sync: the mirror could not confirm a second copy: refused (451 / 503) and withdrawn');
    withdrawnLogged = Date.now();
    withdrawnQuiet = 0;
  });
  const tls = await loadTls(config.smtp.tls, options.persistentPath, config.hostname);
  const router = new Router({ routes: config.routes, servers: config.resolver.servers });
  const attemptLog = new EventLog({
    dir: eventsDir(options.persistentPath),
    name: `w${options.worker}`,
    node: options.nodeId,
    maxSize: config.events.attemptLog.maxSize,
    maxAgeMs: config.events.attemptLog.maxAgeMs,
    commitIntervalMs: config.events.attemptLog.commitIntervalMs,
    fsync: config.spool.fsync,
    reserve: spool.reserve,
  });
  // With several workers the primary holds the node's throttle counts.
  const primaryAuthority = options.workers > 1 && process.send ? PrimaryAuthority.overChannel(process, { sent: (op) => metrics.throttleIpc.inc({ op }) }) : undefined;
  // Node-wide decisions (the primary's, or this worker's own when it is alone)...
  const throttles = new Throttles(config); // rules for the engine, counts when this worker is alone
  const nodeAuthority: ThrottleAuthority = primaryAuthority ?? new LocalAuthority(throttles);
  // ...and cluster-wide ones for sending IPs held by proxies, which decide for every MTA at once.
  const clusterAuthority = clusterThrottleAuthority(config, nodeAuthority, `${options.nodeId}/w${options.worker}`, logger);
  const authority = clusterAuthority ?? nodeAuthority;
  // TLS-RPT (RFC 8460): counts per session; mailto: reports are queued like DSNs.
  const tlsRpt = startTlsRpt({ config, persistentPath: options.persistentPath, worker: options.worker, nodeId: options.nodeId, logger, submit: (mail) => intake.submit({ ...mail, via: 'smtp', client: { helo: 'tls-rpt' } }) });
  const engine = new DeliveryEngine({
    partitions: spool.partitions,
    config,
    // Proxies are read at start: a change of the proxy list takes a restart (rolling), not a refresh.
    // Like the proxies, delivery.tls_ca_file is read at start (a change takes a restart).
    connector: new RoutingConnector({ proxies: config.proxies, haproxy: config.haproxy, timeouts: { ...RFC5321_CLIENT_TIMEOUTS, connectMs: config.delivery.connectTimeoutMs, greetingMs: config.delivery.greetingTimeoutMs }, logger, name: `${options.nodeId}/w${options.worker}`, trust: config.delivery.tlsCaFile ? mxTrust(config.delivery.tlsCaFile, 'delivery.tls_ca_file') : undefined }),
    router,
    attemptLog,
    logger,
    nodeId: options.nodeId,
    throttles,
    authority,
    bounce: (dsn) => intake.submit({ ...dsn, via: 'smtp', client: { helo: 'dsn' } }),
    tlsReport: tlsRpt?.store,
    // MTA-STS policies survive a restart (a blocked fetch after one must not mean clear text).
    tlsPolicy: new TlsPolicyResolver({ config, logger, stsFile: stsCacheFile(options.persistentPath, options.worker) }),
  });
  intake.on('accepted', (entry: SpoolEntry) => engine.schedule(entry));

  const smtp = config.smtp.listeners.map(
    (listener) => new SmtpListener({ listener, config, intake, tls, logger, bind: options.binds.smtp[listener.name] }),
  );
  const http = new HttpApi({ config, intake, tls: config.http.tls ? tls : undefined, logger, bind: options.binds.http });
  await Promise.all([...smtp.map((s) => s.listen()), http.listen()]);

  const send = (m: FromWorker): void => {
    if (process.send) process.send(m);
  };
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
    send({ type: 'stats', stats: s });
  };
  const timer = setInterval(report, 1000);
  timer.unref();

  const answer = async (query: string, args: Record<string, string | undefined>): Promise<unknown> => {
    const sel = { domain: args.domain, vmta: args.vmta, id: args.id };
    const whole = Object.values(sel).every((v) => v === undefined);
    switch (query) {
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
      case 'drain-stop': {
        // `volley drain`: no more mail in, nothing new out. The attempts in flight finish and are
        // recorded (their events too); the drain asks again until none is left (the answer says how many).
        intake.draining = true;
        engine.pauseForDrain();
        const { inflight, unrecorded } = engine.status();
        // Every attempt recorded: close the event file, so the s3 sink ships its last events (it takes closed files only).
        // A file that cannot be closed (a broken disk) must not fail the stop itself: logged, the drain goes on.
        if (inflight + unrecorded === 0) await attemptLog.closeCurrent().catch((err: unknown) => logger.error({ err }, 'drain: closing the event file failed; its events wait for the next start'));
        return { draining: true, queued: spool.size, inflight: inflight + unrecorded };
      }
      case 'drain-settle': {
        // Held at start for an interrupted drain (reconcile.ts): the destination has `remove`, not `release`.
        const list = (v: string | undefined): string[] => (v ? v.split(',') : []);
        let removed = 0;
        for (const id of list(args.remove)) {
          const p = spool.partitions.find((x) => x.get(id));
          if (p) {
            await p.markDone({ id, reason: 'drained' });
            removed++;
          }
        }
        let released = 0;
        for (const id of list(args.release)) {
          const entry = spool.partitions.map((x) => x.get(id)).find((e) => e !== undefined);
          if (entry) {
            engine.schedule(entry);
            released++;
          }
        }
        return { removed, released };
      }
      case 'drain-resume':
        // The drain gave up before anything moved (event wait ran out, or it was stopped): the node works again.
        intake.draining = false;
        engine.resume();
        return { draining: false, queued: spool.size };
      default:
        throw new Error(`unknown query ${query}`);
    }
  };

  let stopping = false;
  const shutdown = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    logger.info('worker stopping: closing listeners, finishing deliveries in flight');
    await Promise.all([...smtp.map((s) => s.close()), http.close()]);
    await engine.stop();
    mirrorSync?.close();
    primaryAuthority?.leases.returnAll(); // nothing more is sent: the rest of the hour is the other workers'
    clusterAuthority?.close();
    await tlsRpt?.close();
    await attemptLog.close();
    await spool.close();
    process.exit(0);
  };

  process.on('message', (m: ToWorker) => {
    if (m.type === 'config') {
      try {
        engine.apply(m.config); // first: it is the part that can refuse (DKIM keys)
      } catch (err) {
        logger.error({ err }, 'config refresh refused by this worker; the running config stays');
        return;
      }
      config = m.config;
      primaryAuthority?.leases.returnAll(); // blocks taken under the old limits go back
      intake.apply(config);
      smtp.forEach((s) => s.apply(config));
      http.apply(config);
      router.apply(config.routes, config.resolver.servers);
      tlsRpt?.apply(config);
      send({ type: 'config-applied', worker: options.worker });
    } else if (m.type === 'query') {
      void answer(m.query, m.args ?? {}).then(
        (data) => send({ type: 'reply', id: m.id, ok: true, data }),
        (err: Error) => send({ type: 'reply', id: m.id, ok: false, error: err.message }),
      );
    } else if (m.type === 'drain-store') {
      void storeDrained(spool, intake, (entry) => engine.schedule(entry), m.records).then((outcomes) => send({ type: 'drain-stored', id: m.id, outcomes }));
    } else if (m.type === 'throttle-reply') {
      primaryAuthority?.onReply(m.id, m.value);
    } else if (m.type === 'throttle-recall') {
      primaryAuthority?.onRecall(m.key);
    } else if (m.type === 'shutdown') {
      void shutdown();
    }
  });
  // SIGINT (a terminal's Ctrl-C reaches the whole group) is the primary's to
  // handle: it stops every worker. SIGTERM stops this one gracefully (above).
  process.on('SIGINT', () => undefined);
  terminate.then(() => void shutdown());
  if (terminate.requested()) return void shutdown();
  process.on('disconnect', () => void shutdown());
  report();
  await reportDrainHeld(spool, options.worker);
  // Ready means taking mail: the queue's timers are built (and the scan's
  // garbage collected) right after, while intake already runs.
  send({ type: 'ready', worker: options.worker });
  setImmediate(() => {
    engine.start(heldAtStart(options.persistentPath));
    compactHeap();
  });
}
