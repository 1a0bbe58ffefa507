import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { AggregatorRegistry } from 'prom-client';
import type { Logger } from 'pino';
import { ConfigError, loadConfig } from '../shared/config/load';
import { checkWorkerInputs } from './worker-inputs';
import { oneAtATime } from './one-at-a-time';
import type { VolleyConfig } from '../shared/config/types';
import { AdminServer } from './admin/admin-server';
import { loadVerpSecret } from './delivery/records/verp';
import { startInboundListener } from './inbound/inbound-listener';
import { inboundRegistry } from './inbound/inbound-metrics';
import { answerThrottle, revive } from './delivery/throttle/throttle-authority';
import { LeaseBook } from './delivery/throttle/lease-book';
import { Throttles } from './delivery/throttle/throttles';
import { isFromWorker, type ToWorker, type WorkerStats } from './ipc';
import { lockPersistentPath, nodeIdentity } from './node-identity';
import type { Binds } from './worker';
import { attemptHistory } from './admin/attempt-history';
import { EventService } from './events/event-service';
import { PrimaryDrain } from './drain/primary-side';
import { loadDrainSecrets } from './drain/secrets';
import { workerExecArgv } from '../shared/worker-flags';
import { reconcileAtStart } from './drain/source/reconcile';
import { DrainHolds } from './drain/source/holds';
import { settleInChunks } from './drain/source/settle-chunks';
import { DRAIN_SECRET_ENV } from '../shared/config/drain';
import { loadSecret } from '../shared/proxy-protocol/handshake';
import { keepIpcErrors } from '../shared/worker-ipc';

export interface MtaOptions {
  configPath: string;
  persistentPath: string;
  nodeId?: string;
  workers?: number;
  binds: Binds;
  admin?: { address: string; port: number };
  logger: Logger;
}

/**
 * One worker per core but one: that core is left to the kernel's network
 * stack and fsyncs, the primary, and the node's other daemons. Measured on
 * the 2-core bench (fsync on, a connection per message): one worker took
 * ~3,300 msg/s, two only 2,600-3,050 as they fought the load for the second
 * core. On a 128-core instance it costs under 1 %.
 */
export function defaultWorkers(cores = availableParallelism()): number {
  return Math.max(1, cores - 1);
}

/** What the primary passes to each worker through its environment. */
export interface WorkerEnv {
  VOLLEY_WORKER: string;
  VOLLEY_WORKERS: string;
  VOLLEY_NODE_ID: string;
}

/**
 * The MTA's primary process: holds the persistent-path lock, forks one worker
 * per core, restarts a worker that dies, serves the admin port, and applies a
 * config refresh to every worker only after validating it. A rejected refresh
 * leaves the running config in place.
 */
export async function runPrimary(options: MtaOptions): Promise<void> {
  const { logger } = options;
  // First: SIGHUP's default action kills the process, and systemd counts a main process killed by it as a clean
  // exit (Restart=on-failure leaves the node down). volley config sync reloads by SIGHUP as soon as the unit is
  // active, which a Type=simple unit is from its exec: one that comes while the node starts is kept, and its
  // refresh runs once the node can refresh (the file may have changed after it was loaded below).
  // One listener for good: removing the last one stops Node's signal watcher, and a SIGHUP it caught but had not
  // dispatched yet (the start runs on without giving the event loop a turn) would be dropped with it.
  let hangupWhileStarting = false;
  let onHangup = (): void => void (hangupWhileStarting = true);
  process.on('SIGHUP', () => onHangup());
  let config: VolleyConfig;
  try {
    config = loadConfig(options.configPath);
  } catch (err) {
    if (err instanceof ConfigError) logger.fatal({ issues: err.issues }, `config rejected:\n${err.message}`);
    throw err;
  }
  const unlock = lockPersistentPath(options.persistentPath);
  const nodeId = nodeIdentity(options.persistentPath, options.nodeId);
  // A file a worker cannot load (TLS pair, DKIM key, CA, VERP key, proxy secret) stops the start here, with its name (not a worker crash loop).
  await checkWorkerInputs(config, options.persistentPath);
  // Before the workers start writing: a sink that never ran starts at the log's end as it is now.
  const events = new EventService({ config, persistentPath: options.persistentPath, nodeId, logger });
  events.start();
  /** `volley drain` stopped intake: /readyz says 503 so the NLB and the lb send nothing more here, and the inbound listener refuses reports (451). */
  let draining = false;
  // Reports (DSNs, ARF) come to the primary: they write to its own producer of the event log.
  const inbound = config.inbound
    ? await startInboundListener(config.inbound, {
        events: events.writer,
        persistentPath: options.persistentPath,
        logger,
        verpSecret: config.inbound.verp && loadVerpSecret(config.inbound.verp.secretFile),
        nodeId,
        hostname: config.hostname,
        bounceRules: config.bounceRules,
        draining: () => draining,
      })
    : undefined;
  if (inbound) logger.info({ port: inbound.port, domains: config.inbound?.domains }, 'inbound: listening for DSNs and ARF reports');
  if (config.drain) loadDrainSecrets(config.drain); // and a drain secret
  const count = options.workers ?? defaultWorkers();
  const throttles = new Throttles(config);
  const permits = new Map<number, Map<string, number>>();
  // Message permits go to workers in blocks (lease-book.ts): one ask per block, not per message.
  const leases = new LeaseBook(throttles, () => count, (worker, key) => {
    const w = workers.get(worker);
    if (w?.isConnected()) w.send({ type: 'throttle-recall', key } satisfies ToWorker);
  });
  const stats = new Map<number, WorkerStats>();
  const ready = new Set<number>();
  const workers = new Map<number, Worker>();
  let stopping = false;
  /** An interrupted drain's journal is being settled (once per start, when every worker is up). */
  let reconciling = false;
  /** Workers that said they are stopping on a signal of their own: restarted once gone, unless the node stops. */
  const signalled = new Map<number, string>();
  /** Bumped by every accepted refresh; which generation each worker was given. */
  let generation = 0;
  const given = new Map<number, number>();
  let queryId = 0;
  const pending = new Map<number, (m: { ok: boolean; data?: unknown; error?: string }) => void>();

  // Workers accept on the shared sockets themselves: the primary does not
  // become a bottleneck handing every connection over IPC.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  // 'advanced': drained message bodies go to their worker as Buffers, not JSON arrays of bytes.
  cluster.setupPrimary({ execArgv: workerExecArgv(process.execArgv), serialization: 'advanced' });
  /** Every worker removes `remove` (done, `drained`) and delivers `release`: held messages of an interrupted drain of this node. */
  // In chunks, each within one ask's timeout (settle-chunks.ts).
  const settleHeld = (remove: string[], release: string[]): Promise<void> =>
    settleInChunks(remove, release, async (rm, rel) => {
      await Promise.all([...workers.values()].map((x) => ask(x, 'drain-settle', { remove: rm.join(','), release: rel.join(',') })));
    });
  // One lock for the reconcile and the endpoint's `have` about this node's own held messages (holds.ts).
  // `storing` asks the drain endpoint (set up just below; not asked before the reconcile starts).
  const holds = new DrainHolds({ persistentPath: options.persistentPath, release: (ids) => settleHeld([], ids), storing: (id) => drain?.isStoring(id) ?? false, logger });
  // Drain (drain section): the dedupe store opens before the workers, which report their drained messages to it.
  const drain = await PrimaryDrain.open({
    holds,
    config,
    persistentPath: options.persistentPath,
    nodeId,
    workerCount: count,
    workers,
    unavailable: () => (stopping ? 'this node is stopping' : draining ? 'this node is draining itself' : ready.size < count ? `${count - ready.size} of ${count} workers not ready` : undefined),
    logger,
  });
  const fork = (index: number): void => {
    const env: WorkerEnv = { VOLLEY_WORKER: String(index), VOLLEY_WORKERS: String(count), VOLLEY_NODE_ID: nodeId };
    const w = cluster.fork(env);
    keepIpcErrors(w, (err) => logger.warn({ worker: index, err }, 'worker: a message to it failed (it is exiting)'));
    workers.set(index, w);
    w.on('message', (m: unknown) => {
      if (!isFromWorker(m)) return;
      if (m.type === 'config-request') {
        given.set(index, generation);
        w.send({ type: 'config', config } satisfies ToWorker);
      } else if (m.type === 'stopping') {
        // Only the primary's own signal stops the node: systemd's stop signals
        // every process of the unit, the primary included. A worker that alone
        // got SIGTERM (a stray kill) finishes gracefully and is restarted below:
        // exiting 0 here would leave the node down for good under
        // Restart=on-failure, and a node missing a worker strands its partitions.
        signalled.set(index, m.signal);
      } else if (m.type === 'ready') {
        // A worker still starting when the node began to stop had no handler yet: the
        // shutdown sent then was dropped, and it would run on until the deadline's SIGKILL.
        if (stopping) return void w.send({ type: 'shutdown' } satisfies ToWorker);
        // A refresh that came while this worker was starting may have missed it.
        if (given.get(index) !== generation) {
          given.set(index, generation);
          w.send({ type: 'config', config } satisfies ToWorker);
        }
        ready.add(index);
        drain?.onWorkerReady(index);
        if (ready.size === count) logger.info({ nodeId, workers: count, persistentPath: options.persistentPath }, 'mta ready');
        if (ready.size === count && !reconciling) {
          reconciling = true;
          void reconcileAtStart({
            persistentPath: options.persistentPath,
            nodeId,
            logger,
            secret: (file) => {
              try {
                return loadSecret({ file: file ?? config.drain?.secretFile, env: DRAIN_SECRET_ENV });
              } catch {
                return undefined;
              }
            },
            settle: settleHeld,
            holds,
            forget: async (ids) => drain?.forget(ids),
          }).catch((err: unknown) => logger.error({ err }, 'settling an interrupted drain failed; its messages stay held until the next start or `volley drain`'));
        }
      } else if (m.type === 'stats') stats.set(index, m.stats);
      else if (m.type === 'reply') pending.get(m.id)?.(m);
      else if (m.type === 'drain-stored') drain?.onStored(m.id, m.outcomes);
      else if (m.type === 'drain-held') {
        // The worker delivers nothing until this is recorded (or has failed, logged: a broken disk must not keep the node down).
        void (drain?.onHeld(m.ids) ?? Promise.resolve())
          .catch((err: unknown) => logger.error({ err }, 'drain: recording held ids failed'))
          .then(() => w.send({ type: 'drain-held-ack' } satisfies ToWorker));
      }
      else if (m.type === 'throttle') {
        const q = m.q;
        // Remember whose connection permits these are: a worker that dies cannot release them.
        const held = permits.get(index) ?? new Map<string, number>();
        permits.set(index, held);
        if (q.op === 'release') {
          throttles.releaseConnection(q.key);
          held.set(q.key, Math.max(0, (held.get(q.key) ?? 0) - 1));
          return; // told, not asked: no answer
        }
        if (q.op === 'return') return leases.giveBack(index, q.key, q.lease, q.unspent);
        const value = q.op === 'lease' ? leases.grant(index, q.key, revive(q.limits), q.want) : answerThrottle(throttles, q);
        if (q.op === 'connect' && value === true) held.set(q.key, (held.get(q.key) ?? 0) + 1);
        w.send({ type: 'throttle-reply', id: m.id, value } satisfies ToWorker);
      }
    });
    w.on('exit', (code, signal) => {
      for (const [key, n] of permits.get(index) ?? []) for (let i = 0; i < n; i++) throttles.releaseConnection(key);
      permits.delete(index);
      leases.forget(index);
      drain?.onWorkerExit(index);
      ready.delete(index);
      stats.delete(index);
      given.delete(index);
      const own = signalled.get(index);
      signalled.delete(index);
      if (stopping) return;
      // A worker killed by SIGTERM before it could handle one (still starting) counts as signalled too.
      const bySignal = own ?? (signal === 'SIGTERM' ? signal : undefined);
      if (bySignal) logger.warn({ worker: index, signal: bySignal }, 'worker stopped on a signal of its own; restarting it');
      else logger.error({ worker: index, code, signal }, 'worker died; restarting it');
      // The delay also lets a node stop win: when systemd signals the whole
      // unit, the primary's SIGTERM (sent with the worker's) sets `stopping` first.
      setTimeout(() => stopping || fork(index), 500);
    });
  };
  for (let i = 0; i < count; i++) fork(i);

  const ask = (w: Worker, query: string, args: Record<string, string> = {}): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = ++queryId;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`worker did not answer ${query}`));
      }, 5000);
      pending.set(id, (m) => {
        clearTimeout(timer);
        pending.delete(id);
        if (m.ok) resolve(m.data);
        else reject(new Error(m.error));
      });
      w.send({ type: 'query', id, query, args } satisfies ToWorker);
    });

  // One at a time: a refresh reads the file, then awaits the check of the files it names, and two at once could
  // finish in the other order, leaving the older file's config running. A SIGHUP during one runs one more after it.
  const refresh = oneAtATime(async (): Promise<{ ok: boolean; errors?: string[] }> => {
    try {
      const next = loadConfig(options.configPath);
      // Every key must load before any worker sees the new config; and what workers read only
      // at start must load too: one restarted later (a crash, a stray SIGTERM) gets this config.
      await checkWorkerInputs(next, options.persistentPath);
      // Last, as it swaps the webhook sinks' keys once all of them are read: a rotated webhook secret signs from now on.
      events.reloadSecrets(next);
      config = next;
    } catch (err) {
      const errors = err instanceof ConfigError ? err.issues.map((i) => `${i.file}:${i.line}:${i.column}: ${i.field}: ${i.message}`) : [(err as Error).message];
      logger.error({ errors }, 'config refresh rejected; the running config stays');
      return { ok: false, errors };
    }
    throttles.apply(config);
    drain?.apply(config);
    generation++;
    for (const [index, w] of workers) {
      // A worker not ready yet may have no handler for it (it is past its config-request, before its own
      // 'message' listener) and would drop it: its 'ready' finds its generation behind and sends it then.
      if (!w.isConnected() || !ready.has(index)) continue;
      given.set(index, generation);
      w.send({ type: 'config', config } satisfies ToWorker);
    }
    logger.info('config refreshed');
    return { ok: true };
  });

  const aggregator = new AggregatorRegistry();
  const admin = new AdminServer({
    ready: async () => {
      const reasons: string[] = [];
      if (draining) reasons.push('draining: this node takes no more mail');
      if (ready.size < count) reasons.push(`${count - ready.size} of ${count} workers not ready`);
      for (const s of stats.values()) if (s.writeError) reasons.push(`worker ${s.worker}: ${s.writeError}`);
      // Sinks are detail, never a reason: a webhook that is down must not take the node out of the load balancer.
      return { ok: reasons.length === 0, reasons, events: await events.readiness() };
    },
    metrics: async () => {
      const registry = await aggregator.clusterMetrics();
      return { contentType: aggregator.contentType, body: `${registry}\n${await events.registry.metrics()}\n${await inboundRegistry.metrics()}` };
    },
    events: { status: () => events.status(), replay: (sink, from) => events.replay(sink, from) },
    queue: async (action, args) => {
      const perWorker = await Promise.all([...workers.values()].map((w) => ask(w, action, args)));
      if (action === 'message') {
        const state = perWorker.find((x) => x !== null) ?? null;
        return { id: args.id, queued: state !== null, state, attempts: await attemptHistory(options.persistentPath, args.id ?? '') };
      }
      const queued = perWorker.reduce((n: number, x) => n + ((x as { queued?: number }).queued ?? 0), 0);
      return { node: nodeId, queued, workers: perWorker };
    },
    refresh: () => refresh(),
    drain: async (action) => {
      draining = action === 'stop';
      const perWorker = (await Promise.all([...workers.values()].map((w) => ask(w, `drain-${action}`)))) as { queued: number; inflight?: number }[];
      // A worker restarted meanwhile starts taking mail again; the drain asks until every worker answers draining.
      const missing = count - perWorker.length;
      const inflight = perWorker.reduce((n, w) => n + (w.inflight ?? 0), 0) + (draining ? missing : 0);
      // Every attempt recorded (the workers closed their event files): the last events go to the s3 sink now.
      if (!draining) events.endHandOver();
      if (draining && inflight === 0) await events.handOver().catch((err: unknown) => logger.error({ err }, 'drain: closing the event file failed; its events wait for the next start'));
      return {
        draining,
        queued: perWorker.reduce((n, w) => n + w.queued, 0),
        inflight,
      };
    },
    shutdown: (reason) => stop(reason),
  }, { tokens: () => config.admin.tokens, logger });
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'mta stopping');
    for (const w of workers.values()) if (w.isConnected()) w.send({ type: 'shutdown' } satisfies ToWorker);
    const deadline = setTimeout(() => {
      for (const w of workers.values()) w.kill('SIGKILL');
    }, 30_000);
    deadline.unref();
    const check = setInterval(() => {
      if ([...workers.values()].every((w) => w.isDead())) {
        clearInterval(check);
        void Promise.all([admin.close(), drain?.close(), inbound?.close(), events.close().catch((err: unknown) => logger.error({ err }, 'events: close failed'))]).then(() => {
          unlock();
          process.exit(0);
        });
      }
    }, 50);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  onHangup = () => void refresh();
  if (hangupWhileStarting) void refresh();
  // Listening last: a stop (SIGTERM, SIGINT) may come while the admin port binds.
  const adminBind = options.admin ?? { address: config.admin.address, port: config.admin.port };
  await admin.listen(adminBind.port, adminBind.address);
  // Health on its own address (admin.health_listen): the load balancers reach /readyz and nothing else.
  const health = config.admin.healthListen;
  if (health) await admin.listenHealth(health.port, health.address);
  // The drain endpoint (drain section): 503 until every worker is ready, and once the node stops.
  await drain?.listen();
}
