// The lb's primary process: forks the workers that accept and relay (one per
// core by default), and holds what is one per node: backend health (the
// checks, fall and rise, fed by what workers saw on real traffic), the admin
// port (/readyz, /status and /metrics summed over the workers), the reload
// on SIGHUP (validated here, applied by every worker) and the stop.
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { AggregatorRegistry } from 'prom-client';
import { VolleyError } from '../shared/errors';
import type { Logger } from '../shared/log';
import { workerExecArgv } from '../shared/worker-flags';
import { LbAdminServer } from './admin-server';
import { BackendPool, HealthChecker } from './backend-pool';
import { ClientBook, type ClientChange } from './client-book';
import { isFromLbWorker, LB_OPTIONS_ENV, type ToLbWorker } from './ipc';
import { healthEvents, reloadRefusal, type LbStatus } from './lb';
import { LbMetrics } from './metrics';
import type { LbOptions } from './options';
import { keepIpcErrors } from '../shared/worker-ipc';

/**
 * V8 flags for the lb's workers: none. A session allocates a few KB (no
 * message is parsed or kept), so the MTA's larger young generation has
 * nothing to save here and would cost memory on every core.
 */
export const LB_WORKER_V8_FLAGS: readonly string[] = [];

/** One worker per core: the lb has nothing else on its instance to leave a core to. */
export function defaultLbWorkers(cores = availableParallelism()): number {
  return Math.max(1, cores);
}

export interface LbPrimaryOptions {
  workers: number;
  /** Reads the options again (the --config file with the same flags): what SIGHUP applies. */
  load: () => LbOptions;
  logger: Logger;
}

/**
 * A worker's options: --max-connections is the lb's, so each worker takes
 * its share (rounded up). The kernel spreads connections over the workers
 * about evenly, and a busy worker accepts less often. Not so one client's
 * few connections: --max-connections-per-client is counted for the node by
 * the primary (client-book.ts), never split.
 */
export function workerShare(options: LbOptions, workers: number): LbOptions {
  return { ...options, maxConnections: Math.ceil(options.maxConnections / workers) };
}

interface Pool {
  pool: BackendPool;
  checker: HealthChecker;
}

/** Runs until SIGTERM or SIGINT and every worker has stopped; a second signal closes the sessions at once. */
export async function runLbPrimary(initial: LbOptions, o: LbPrimaryOptions): Promise<void> {
  const { logger, workers: count } = o;
  let options = initial;
  const metrics = new LbMetrics();
  const workers = new Map<number, Worker>();
  const ready = new Set<number>();
  let stopping = false;
  let signals = 0;
  let queryId = 0;
  const pending = new Map<number, { worker: number; answer: (data: unknown) => void; gone: () => void }>();

  const pools = new Map<string, Pool>();
  const clients = new ClientBook(options.maxConnectionsPerClient);
  const broadcast = (m: ToLbWorker): void => {
    for (const w of workers.values()) if (w.isConnected()) w.send(m);
  };
  const tellLimits = (changes: ClientChange[]): void => {
    if (changes.length > 0) broadcast({ type: 'lb-client-limits', changes });
  };
  const makePools = (): void => {
    for (const lo of options.listeners) {
      const events = healthEvents(metrics, lo.name);
      const onStateChange = events.onStateChange!;
      events.onStateChange = (b, up) => {
        onStateChange(b, up);
        broadcast({ type: 'lb-up', states: [{ listener: lo.name, backend: b.id, up }] });
      };
      let p = pools.get(lo.name);
      if (p) {
        p.pool.setBackends(lo.backends);
        p.pool.health = options.health;
        p.checker.stop();
      } else {
        p = { pool: new BackendPool(lo.name, lo.backends, options.health, events, logger), checker: undefined as unknown as HealthChecker };
        pools.set(lo.name, p);
      }
      for (const b of p.pool.backends) metrics.backendUp.set({ listener: lo.name, backend: b.id }, b.up ? 1 : 0);
      p.checker = new HealthChecker(p.pool, lo.mode, options.health, lo.proxyProtocol, events, options.sourceAddress);
      p.checker.start();
    }
  };
  const share = (o: LbOptions): LbOptions => workerShare(o, count);
  const states = (): { listener: string; backend: string; up: boolean }[] =>
    [...pools].flatMap(([listener, p]) => p.pool.backends.map((b) => ({ listener, backend: b.id, up: b.up })));

  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ execArgv: workerExecArgv(process.execArgv, process.env, LB_WORKER_V8_FLAGS) });
  let failedStart: ((err: Error) => void) | undefined;
  let onAllReady: (() => void) | undefined;
  const fork = (index: number): void => {
    const w = cluster.fork({ VOLLEY_LB_WORKER: String(index), [LB_OPTIONS_ENV]: JSON.stringify(share(options)) });
    keepIpcErrors(w, (err) => logger.warn({ worker: index, err }, 'lb worker: a message to it failed (it is exiting)'));
    workers.set(index, w);
    let wasReady = false;
    w.on('message', (m: unknown) => {
      if (!isFromLbWorker(m)) return;
      const pool = 'listener' in m ? pools.get(m.listener)?.pool : undefined;
      const b = pool && 'backend' in m ? pool.byId(m.backend) : undefined;
      if (m.type === 'lb-ready') {
        wasReady = true;
        ready.add(index);
        w.send({ type: 'lb-up', states: states() } satisfies ToLbWorker);
        const limited = clients.limited();
        if (limited.length > 0) w.send({ type: 'lb-client-limits', changes: limited } satisfies ToLbWorker);
        if (ready.size === count) {
          logger.info({ workers: count }, 'lb ready');
          onAllReady?.();
        }
      } else if (m.type === 'lb-failure') {
        if (b) pool!.reportFailure(b, m.reason, m.detail);
      } else if (m.type === 'lb-refusal') {
        if (b) pool!.reportRefusal(b, m.detail);
      } else if (m.type === 'lb-success') {
        if (b) pool!.reportSuccess(b, false);
      } else if (m.type === 'lb-reply') pending.get(m.id)?.answer(m.data);
      // Counted per fork (w.id), not per slot index: a report of a dead worker read after its
      // exit must not count under its replacement.
      else if (m.type === 'lb-client-counts') {
        if (!exited) tellLimits(clients.report(w.id, m.counts));
      }
    });
    let exited = false;
    w.on('exit', (code, signal) => {
      exited = true;
      ready.delete(index);
      tellLimits(clients.forgetWorker(w.id));
      for (const p of [...pending.values()]) if (p.worker === index) p.gone();
      if (workers.get(index) === w) workers.delete(index);
      if (stopping) return;
      if (!wasReady) {
        // Never restarted: a worker that cannot start (a port taken, bad options) would fail again, in a loop.
        failedStart?.(new VolleyError('ELISTEN', `lb worker ${index} exited before it was ready (code ${code}, signal ${signal}): see its log above`));
        return;
      }
      logger.error({ worker: index, code, signal }, 'lb worker died; restarting it');
      // The delay lets a node stop win when systemd signals every process of the unit.
      setTimeout(() => stopping || fork(index), 500);
    });
  };

  const ask = (index: number, w: Worker, what: 'status' | 'metrics'): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = ++queryId;
      const settle = (): void => {
        clearTimeout(timer);
        pending.delete(id);
      };
      const timer = setTimeout(() => {
        settle();
        reject(new VolleyError('EWORKER', `lb worker ${index} did not answer ${what}`));
      }, 5000);
      pending.set(id, {
        worker: index,
        answer: (data) => (settle(), resolve(data)),
        gone: () => (settle(), reject(new VolleyError('EWORKER', `lb worker ${index} exited before answering ${what}`))),
      });
      w.send({ type: 'lb-query', id, what } satisfies ToLbWorker);
    });
  const live = (): [number, Worker][] => [...workers].filter(([i, w]) => ready.has(i) && w.isConnected());
  /** What the live workers answer; one that dies meanwhile (a restart under way) is left out, not an error for the whole page. */
  const answers = async <T>(f: (w: [number, Worker]) => Promise<T>): Promise<T[]> =>
    (await Promise.allSettled(live().map(f))).flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));

  const status = async (): Promise<unknown> => {
    const each = await answers(async ([i, w]) => ({ worker: i, pid: w.process.pid, status: (await ask(i, w, 'status')) as LbStatus }));
    const sum = (f: (s: LbStatus) => number): number => each.reduce((n, e) => n + f(e.status), 0);
    return {
      draining: stopping,
      workers: each.map((e) => ({
        worker: e.worker,
        pid: e.pid,
        active: e.status.active,
        listeners: e.status.listeners.map((l) => ({ name: l.name, active: l.active, connections: l.counters.connections, backends: l.backends.map((b) => ({ address: b.address, up: b.up, active: b.active })) })),
      })),
      active: sum((s) => s.active),
      maxConnections: options.maxConnections,
      /** Clients at --max-connections-per-client over the node, as the workers last reported (client-book.ts). */
      clientsAtLimit: clients.limited().map((c) => c.address),
      listeners: options.listeners.map((lo) => {
        const pool = pools.get(lo.name)!.pool;
        const theirs = each.map((e) => e.status.listeners.find((l) => l.name === lo.name));
        const counter = (k: keyof LbStatus['listeners'][number]['counters']): number => theirs.reduce((n, l) => n + (l?.counters[k] ?? 0), 0);
        const backendSum = (id: string, k: 'active' | 'served'): number => theirs.reduce((n, l) => n + (l?.backends.find((b) => b.address === id)?.[k] ?? 0), 0);
        return {
          name: lo.name,
          mode: lo.mode,
          listen: `${lo.address}:${lo.port}`,
          proxyProtocol: lo.proxyProtocol,
          active: theirs.reduce((n, l) => n + (l?.active ?? 0), 0),
          healthyBackends: pool.healthyCount(),
          counters: { connections: counter('connections'), retries: counter('retries'), rejectedMaxConnections: counter('rejectedMaxConnections'), rejectedPerClient: counter('rejectedPerClient'), noBackend: counter('noBackend') },
          backends: pool.backends.map((b) => ({
            address: b.id,
            up: b.up,
            active: backendSum(b.id, 'active'),
            served: backendSum(b.id, 'served'),
            failures: b.failures,
            consecutiveFailures: b.consecutiveFailures,
            consecutiveSuccesses: b.consecutiveSuccesses,
            lastCheck: b.lastCheck,
            lastFailure: b.lastFailure,
          })),
        };
      }),
    };
  };

  const admin = options.admin
    ? new LbAdminServer({
        draining: () => stopping,
        ready: () => {
          const reasons = [...pools].filter(([, p]) => p.pool.healthyCount() === 0).map(([name]) => `listener ${name} has no healthy backend`);
          if (ready.size < count) reasons.push(`${count - ready.size} of ${count} workers not ready`);
          if (stopping) reasons.push('draining');
          return { ok: reasons.length === 0, reasons };
        },
        status,
        metrics: async () => {
          // Health metrics are the primary's, connection metrics the workers': summed, one page for the node.
          const each = (await answers(([i, w]) => ask(i, w, 'metrics'))) as object[][];
          const own = (await metrics.registry.getMetricsAsJSON()) as object[];
          const all = AggregatorRegistry.aggregate([own, ...each]);
          return { contentType: all.contentType, body: await all.metrics() };
        },
      })
    : undefined;

  const reload = (): void => {
    let next: LbOptions;
    try {
      next = o.load();
      const why = reloadRefusal(options, next);
      if (why) throw new VolleyError('EBADCONFIG', why);
    } catch (err) {
      logger.error({ err }, 'reload refused; the running options stay');
      return;
    }
    options = next;
    tellLimits(clients.setLimit(options.maxConnectionsPerClient));
    makePools();
    broadcast({ type: 'lb-options', options: share(options) });
    broadcast({ type: 'lb-up', states: states() });
    logger.info({ listeners: options.listeners.map((l) => ({ name: l.name, backends: l.backends.map((b) => `${b.host}:${b.port}`) })) }, 'options reloaded');
  };

  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  const stop = (signal: string): void => {
    signals++;
    if (signals > 1) {
      logger.info({ signal }, 'second signal: closing the sessions now');
      broadcast({ type: 'lb-stop', now: true });
      return;
    }
    stopping = true;
    logger.info({ signal }, 'stopping: no new connections, draining sessions');
    for (const p of pools.values()) p.checker.stop();
    // A worker still starting may not listen for messages yet: its signal stops it (gracefully once it can).
    for (const [i, w] of workers) {
      if (ready.has(i) && w.isConnected()) w.send({ type: 'lb-stop', now: false } satisfies ToLbWorker);
      else w.process.kill('SIGTERM');
    }
    // Past the drain timeout a worker closes its sessions itself; this bound is for one that hangs.
    const deadline = setTimeout(() => {
      for (const w of workers.values()) w.process.kill('SIGKILL');
    }, options.drainTimeoutMs + 10_000);
    deadline.unref();
    const check = setInterval(() => {
      if ([...workers.values()].every((w) => w.isDead())) {
        clearInterval(check);
        void (admin?.close() ?? Promise.resolve()).then(() => {
          logger.info('lb stopped');
          resolveStopped();
        });
      }
    }, 50);
  };
  // Before the admin port binds: a SIGHUP's default action kills the process (and systemd does not restart one that died of it).
  process.on('SIGHUP', () => stopping || reload());
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  makePools();
  const startFailure = new Promise<never>((_, reject) => (failedStart = reject));
  const allReady = new Promise<void>((r) => (onAllReady = r));
  for (let i = 0; i < count; i++) fork(i);
  try {
    await Promise.race([allReady, stopped, startFailure]);
    // The admin port last: /healthz answering means the listeners accept (what NLB and Route 53 checks rely on).
    if (admin && options.admin && !stopping) {
      try {
        const { port } = await admin.listen(options.admin.port, options.admin.host);
        logger.info({ admin: `${options.admin.host}:${port}` }, 'admin listening');
      } catch (err) {
        throw new VolleyError('ELISTEN', `cannot listen on the admin port: ${(err as Error).message}`, { cause: err });
      }
    }
    await Promise.race([stopped, startFailure]);
  } catch (err) {
    stopping = true;
    for (const p of pools.values()) p.checker.stop();
    for (const w of workers.values()) w.process.kill('SIGTERM');
    await Promise.all([...workers.values()].map((w) => (w.isDead() ? undefined : new Promise((r) => w.once('exit', r)))));
    await admin?.close();
    throw err;
  }
}
