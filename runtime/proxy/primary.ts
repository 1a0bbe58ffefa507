// `volley proxy` as a node: the primary process forks `workers` ProxyServer
// workers (node:cluster, SCHED_NONE: each accepts on the shared listening
// socket itself) and keeps what must be one per node: the ClusterThrottles
// every control channel asks (over IPC), the admin port (/readyz over all
// workers, /metrics summed over them), the config (read and checked here,
// then sent to every worker, at start and on SIGHUP), the stop (SIGTERM:
// every worker finishes its transactions, then the node exits) and the
// restart of a worker that died.
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { createSecureContext } from 'node:tls';
import { VolleyError } from '../shared/errors';
import type { Logger } from '../shared/log';
import { ClusterThrottles } from '../shared/throttle/cluster-throttles';
import { workerExecArgv } from '../shared/worker-flags';
import { ProxyAdminServer } from './admin-server';
import { loadProxyConfig, loadProxyMaterial, type ProxyConfig, type ProxyMaterial } from './config';
import { PROXY_STOP_GRACE_MS } from './daemon';
import { isFromProxyWorker, type ThrottleOp, type ToProxyWorker } from './ipc';
import { ProxyMetrics } from './metrics';
import { bindProbe, proxyReadiness, type BindProbe } from './readiness';
import type { ProxyStats } from './server';
import { PROXY_WORKER_V8_FLAGS } from './worker-flags';
import { keepIpcErrors } from '../shared/worker-ipc';

/** One worker per core: the proxy's work is all per connection, and the primary only answers throttle questions. */
export function defaultProxyWorkers(cores = availableParallelism()): number {
  return Math.max(1, cores);
}

/** `--workers`: a whole number from 1 up; anything else is refused by name. */
export function parseWorkers(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) throw new VolleyError('EWORKERS', `--workers ${JSON.stringify(value)}: give a whole number of worker processes, 1 or more`);
  return n;
}

export interface ProxyPrimaryOptions {
  configFile: string;
  listen?: { address: string; port: number };
  workers?: number;
  logger: (config: ProxyConfig) => Logger;
  probe?: BindProbe;
}

/** How long a dead worker waits to be forked again: long enough for a node stop (every process signalled) to win. */
const RESTART_DELAY_MS = 500;
/** How long a scrape waits for a worker's counters; one that does not answer is left out of that scrape. */
const STATS_WAIT_MS = 2_000;
/** How long an open waits for a worker to QUIT its idle session to that MX (a QUIT's round trip, normally). */
const EVICT_WAIT_MS = 2_000;
/** How long a reload waits for every worker to say it runs the new config. */
const RELOAD_WAIT_MS = 5_000;

const TOTALS = ['authenticated', 'authenticatedPrevious', 'refused', 'mxOpened', 'mxReused', 'transactions'] as const;

export async function runProxyPrimary(options: ProxyPrimaryOptions): Promise<void> {
  const load = (): { config: ProxyConfig; material: ProxyMaterial } => {
    const config = loadProxyConfig(options.configFile);
    if (options.listen) config.listen = { ...options.listen };
    const material = loadProxyMaterial(config);
    createSecureContext({ key: material.tls.key, cert: material.tls.cert }); // a bad or mismatched pair stops here, not in a worker
    return { config, material };
  };
  let { config, material } = load();
  const log = options.logger(config);
  const count = options.workers ?? defaultProxyWorkers();
  const throttles = new ClusterThrottles(config.throttleMerge);
  const workers = new Map<number, Worker>();
  const listening = new Set<number>();
  /** Workers that listened once: one that dies before it ever could (the port taken) is not forked again and again. */
  const started = new Set<number>();
  /** The MTA ids each worker registered with the throttles: forgotten when that worker dies. */
  const mtasOf = new Map<number, Set<string>>();
  /** Each live worker's last counters, and the totals of workers gone, so the node's counters never go back. */
  const lastStats = new Map<number, ProxyStats>();
  const retired: Record<(typeof TOTALS)[number], number> = { authenticated: 0, authenticatedPrevious: 0, refused: 0, mxOpened: 0, mxReused: 0, transactions: 0 };
  let summed: ProxyStats = { clients: 0, mxIdle: 0, ...retired };
  const statsWaiters = new Map<number, (worker: number, s: ProxyStats) => void>();
  let nextQuery = 0;
  let stopping = false;
  /** Bumped by every accepted reload; the workers say which one they run. */
  let generation = 0;
  const applied = new Map<number, { generation: number; ok: boolean }>();
  let appliedChanged: (() => void) | undefined;

  const answer = (index: number, q: ThrottleOp): boolean | ReturnType<ClusterThrottles['tryMessage']> | undefined => {
    const mine = mtasOf.get(index) ?? new Set<string>();
    mtasOf.set(index, mine);
    switch (q.op) {
      case 'connection':
        mine.add(q.mta);
        return throttles.tryConnection(q.mta, q.key, q.limits, q.reclaim);
      case 'message':
        mine.add(q.mta);
        return throttles.tryMessage(q.mta, q.key, q.limits);
      case 'release':
        throttles.releaseConnection(q.mta, q.key);
        return undefined;
      case 'forget':
        mine.delete(q.mta);
        throttles.forget(q.mta);
        return undefined;
    }
  };

  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ execArgv: workerExecArgv(process.execArgv, process.env, PROXY_WORKER_V8_FLAGS), serialization: 'advanced' });
  const fork = (index: number): void => {
    const w = cluster.fork({ VOLLEY_PROXY_WORKER: String(index) });
    keepIpcErrors(w, (err) => log.warn({ worker: index, err }, 'proxy worker: a message to it failed (it is exiting)'));
    workers.set(index, w);
    w.on('message', (m: unknown) => {
      if (!isFromProxyWorker(m)) return;
      if (m.type === 'config-request') w.send({ type: 'config', generation, config, material } satisfies ToProxyWorker);
      else if (m.type === 'applied') {
        applied.set(index, { generation: m.generation, ok: m.ok });
        appliedChanged?.();
      }
      else if (m.type === 'listening') {
        listening.add(index);
        started.add(index);
        if (listening.size === count) log.info({ workers: count }, 'proxy: every worker listening');
      } else if (m.type === 'throttle') {
        const value = answer(index, m.q);
        if (m.id !== 0 && value !== undefined) w.send({ type: 'throttle-reply', id: m.id, value } satisfies ToProxyWorker);
      } else if (m.type === 'opening') {
        void evictElsewhere(index, m.key).then(() => {
          if (w.isConnected()) w.send({ type: 'open-ok', id: m.id } satisfies ToProxyWorker);
        });
      } else if (m.type === 'evicted') {
        evictWaiters.get(m.id)?.(m.closed);
      } else if (m.type === 'stats') {
        lastStats.set(index, m.stats);
        statsWaiters.get(m.id)?.(index, m.stats);
      }
    });
    w.on('exit', (code, signal) => {
      // Its control links are gone with it: their permits go back, as a closed link's do.
      for (const mta of mtasOf.get(index) ?? []) throttles.forget(mta);
      mtasOf.delete(index);
      const last = lastStats.get(index);
      if (last) for (const k of TOTALS) retired[k] += last[k];
      lastStats.delete(index);
      listening.delete(index);
      applied.delete(index);
      appliedChanged?.();
      if (stopping) return;
      if (!started.has(index)) {
        log.fatal({ worker: index, code, signal }, 'proxy: a worker died before it could listen; the node stops (see the worker\'s error above)');
        return stop('a worker could not start', 1);
      }
      log.error({ worker: index, code, signal }, 'proxy: worker died; restarting it');
      setTimeout(() => stopping || fork(index), RESTART_DELAY_MS);
    });
  };

  const evictWaiters = new Map<number, (closed: number) => void>();
  let nextEvict = 0;
  /** Asks one worker to QUIT one idle session for `key`; 0 when it had none or did not answer in EVICT_WAIT_MS (stopped, dying). */
  const evictOneOn = (w: Worker, key: string): Promise<number> =>
    new Promise((resolve) => {
      const id = ++nextEvict;
      const timer = setTimeout(() => {
        evictWaiters.delete(id);
        resolve(0);
      }, EVICT_WAIT_MS);
      evictWaiters.set(id, (closed) => {
        clearTimeout(timer);
        evictWaiters.delete(id);
        resolve(closed);
      });
      w.send({ type: 'evict', id, key } satisfies ToProxyWorker);
    });
  /**
   * Before `opener` opens an MX session for `key` (its own pool had none),
   * one other worker that keeps an idle session for that key QUITs it: in one
   * process that connect would have reused it, so the MX sees as many of this
   * node's connections as one process would keep, and a limit of 1 connection
   * stays 1 at the MX. One, not all: the others' idle sessions still serve
   * their own links. Workers are asked in turn until one had a session.
   */
  const evictElsewhere = async (opener: number, key: string): Promise<void> => {
    for (const [i, w] of [...workers.entries()]) {
      if (i === opener || !w.isConnected()) continue;
      if ((await evictOneOn(w, key)) > 0) return;
    }
  };

  /** Every live worker's counters, summed with those of workers gone. */
  const gather = async (): Promise<ProxyStats> => {
    const live = [...workers.entries()].filter(([, w]) => w.isConnected());
    const id = ++nextQuery;
    const got = new Map<number, ProxyStats>();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, STATS_WAIT_MS);
      statsWaiters.set(id, (worker, s) => {
        got.set(worker, s);
        if (got.size >= live.length) {
          clearTimeout(timer);
          resolve();
        }
      });
      if (live.length === 0) resolve();
      for (const [, w] of live) w.send({ type: 'stats-query', id } satisfies ToProxyWorker);
    });
    statsWaiters.delete(id);
    const total: ProxyStats = { clients: 0, mxIdle: 0, ...retired };
    for (const [index] of live) {
      const s = got.get(index) ?? lastStats.get(index);
      if (!s) continue;
      total.clients += s.clients;
      total.mxIdle += s.mxIdle;
      for (const k of TOTALS) total[k] += s[k];
    }
    return total;
  };

  const metrics = new ProxyMetrics(() => summed, () => listening.size);
  const admin = new ProxyAdminServer({
    ready: async () => {
      const view = { draining: stopping, listening: listening.size === count, settings: { tls: material.tls, secret: material.secret, sendingIps: config.sendingIps } };
      const r = await proxyReadiness(view, options.probe ?? bindProbe);
      if (!stopping && listening.size < count) r.reasons.push(`${count - listening.size} of ${count} workers not listening`);
      return r;
    },
    metrics: async () => {
      summed = await gather();
      return { contentType: metrics.registry.contentType, body: await metrics.registry.metrics() };
    },
  });

  /** Resolves once every live worker runs `gen` (or has refused it), or after `waitMs`: which refused, which did not answer. */
  const appliedEverywhere = (gen: number, waitMs: number): Promise<{ refused: number[]; silent: number[] }> =>
    new Promise((resolve) => {
      const settle = (): boolean => {
        const live = [...workers.entries()].filter(([, w]) => w.isConnected()).map(([i]) => i);
        const silent = live.filter((i) => (applied.get(i)?.generation ?? -1) < gen);
        if (silent.length > 0) return false;
        appliedChanged = undefined;
        clearTimeout(timer);
        resolve({ refused: live.filter((i) => applied.get(i)?.ok === false), silent: [] });
        return true;
      };
      const timer = setTimeout(() => {
        appliedChanged = undefined;
        const live = [...workers.entries()].filter(([, w]) => w.isConnected()).map(([i]) => i);
        resolve({ refused: live.filter((i) => applied.get(i)?.generation === gen && !applied.get(i)!.ok), silent: live.filter((i) => (applied.get(i)?.generation ?? -1) < gen) });
      }, waitMs);
      appliedChanged = () => void settle();
      settle();
    });

  let reloads: Promise<void> = Promise.resolve();
  const reloadNow = async (): Promise<void> => {
    if (stopping) return;
    log.info({ file: options.configFile }, 'proxy: reloading the config');
    let next: { config: ProxyConfig; material: ProxyMaterial };
    try {
      next = load();
    } catch (err) {
      const e = err as Error & { code?: string };
      metrics.reloads.inc({ result: 'failed' });
      log.error({ file: options.configFile, code: e.code, problems: e.message }, `proxy: reload refused, the running config is kept: ${e.message.split('\n')[0]}`);
      return;
    }
    const addr = (a: { address: string; port: number }): string => `${a.address}:${a.port}`;
    const kept = [
      ...(addr(next.config.listen) !== addr(config.listen) ? [{ setting: 'listen', running: addr(config.listen), wanted: addr(next.config.listen) }] : []),
      ...(addr(next.config.adminListen) !== addr(config.adminListen) ? [{ setting: 'admin_listen', running: addr(config.adminListen), wanted: addr(next.config.adminListen) }] : []),
      ...(next.config.throttleMerge !== config.throttleMerge ? [{ setting: 'throttle_merge', running: config.throttleMerge, wanted: next.config.throttleMerge }] : []),
    ];
    for (const k of kept) log.warn(k, `proxy: reload: ${k.setting} changes only on a restart; still ${k.running} (the file says ${k.wanted})`);
    // What needs a restart keeps its running value, so the next reload compares against that.
    config = { ...next.config, listen: config.listen, adminListen: config.adminListen, throttleMerge: config.throttleMerge };
    material = next.material;
    log.level = config.logLevel ?? process.env.VOLLEY_LOG_LEVEL ?? 'info';
    // A worker forked from now on asks for the config and gets this one.
    const gen = ++generation;
    for (const w of workers.values()) if (w.isConnected()) w.send({ type: 'config', generation: gen, config, material } satisfies ToProxyWorker);
    const { refused, silent } = await appliedEverywhere(gen, RELOAD_WAIT_MS);
    if (refused.length > 0 || silent.length > 0) {
      metrics.reloads.inc({ result: 'failed' });
      log.error({ refused_by_workers: refused, not_answered_by_workers: silent }, 'proxy: reload not applied on every worker (each keeps the config it runs; see its log)');
      return;
    }
    metrics.reloads.inc({ result: 'ok' });
    log.info({ file: options.configFile, workers: workers.size, needs_restart: kept.map((k) => k.setting) }, 'proxy: config reloaded on every worker');
  };
  // Reloads run one at a time, in the order the signals came.
  const reload = (): void => {
    reloads = reloads.then(reloadNow).catch((err: unknown) => log.error({ err }, 'proxy: reload failed'));
  };

  const stop = (signal: string, exitCode = 0): void => {
    if (stopping) return void log.info({ signal }, 'proxy: already stopping, transactions in flight still finish');
    stopping = true;
    log.info({ signal }, 'proxy: stopping (transactions in flight may finish)');
    for (const w of workers.values()) if (w.isConnected()) w.send({ type: 'stop', graceMs: PROXY_STOP_GRACE_MS } satisfies ToProxyWorker);
    // A worker that hangs past its own grace is cut: systemd would SIGKILL the unit soon after anyway.
    const deadline = setTimeout(() => {
      for (const w of workers.values()) if (!w.isDead()) w.process.kill('SIGKILL');
    }, PROXY_STOP_GRACE_MS + 5_000);
    deadline.unref();
    const check = setInterval(() => {
      if (![...workers.values()].every((w) => w.isDead())) return;
      clearInterval(check);
      void admin.close().then(() => {
        log.info('proxy: stopped');
        log.flush();
        process.exit(exitCode);
      });
    }, 50);
  };
  // Before anything can take time: SIGHUP's default action kills the process.
  process.on('SIGHUP', reload);
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  const { address, port } = config.adminListen;
  try {
    await admin.listen(port, address);
  } catch (err) {
    throw new VolleyError('EADMINLISTEN', `admin_listen ${address}:${port}: cannot listen: ${(err as Error).message} (another proxy on this host? give each its own admin_listen)`);
  }
  log.info({ address, port, workers: count }, 'proxy: admin port listening (/healthz /readyz /metrics); starting the workers');
  for (let i = 0; i < count; i++) fork(i);
}
