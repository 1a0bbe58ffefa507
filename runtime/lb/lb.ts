// The `lb` daemon: listeners, their backend pools and health checkers, the
// admin port, and the graceful stop (stop accepting, let sessions finish,
// bounded by the drain timeout, then close what is left).
import { createServer, type Server, type Socket } from 'node:net';
import { ClientLimits } from '../shared/client-limits';
import { endSocket } from '../shared/end-socket';
import { VolleyError } from '../shared/errors';
import type { Logger } from '../shared/log';
import { LbAdminServer } from './admin-server';
import { BackendPool, HealthChecker, type BackendEvents, type HealthAuthority } from './backend-pool';
import { LbMetrics } from './metrics';
import type { LbOptions, ListenerOptions } from './options';
import { Session, type ListenerCounters } from './session';

const TOO_MANY_REPLY = '421 4.7.0 too many connections, try again later\r\n';
const TOO_MANY_FROM_CLIENT_REPLY = '421 4.7.0 too many connections from your address, try again later\r\n';

interface Listener {
  options: ListenerOptions;
  server: Server;
  pool: BackendPool;
  /** None in a worker: the primary checks for the node. */
  checker?: HealthChecker;
  sessions: Set<Session>;
  counters: ListenerCounters;
  port?: number;
}

export interface Lb {
  /** The bound ports (useful with port 0), by listener name. */
  ports: Record<string, number>;
  adminPort?: number;
  status(): LbStatus;
  /** Graceful stop: no new connections, sessions finish within drainMs (default: the option), then are closed. */
  stop(drainMs?: number): Promise<void>;
  /** Closes every open session now (a stop under way then completes at once). */
  closeSessions(): void;
  metrics: LbMetrics;
  /**
   * A reload (SIGHUP): new backend lists (state kept for backends still
   * listed), health and timeout settings. The listeners themselves (names,
   * addresses, modes) cannot change without a restart: EBADCONFIG.
   */
  apply(next: LbOptions): void;
  /** The primary's word on a backend (a worker). */
  setUp(listener: string, backend: string, up: boolean): void;
  /** The registry's metrics with the gauges brought up to date (for /metrics, and the primary's sum over workers). */
  metricsJson(): Promise<object[]>;
}

/** Running as one of the node's workers: health is the primary's (runtime/lb/primary.ts), and so is the per-client count. */
export interface WorkerRole {
  authority: HealthAuthority;
  clients: ClientGate;
}

/** The node's sessions per client address, summed by the primary (client-book.ts) from what each worker reports. */
export interface ClientGate {
  /** Whether a session more from `address` would pass `limit` over the node, this worker holding `mine` of them now. */
  full(address: string, mine: number, limit: number): boolean;
  /** This worker's count for `address` changed (to `open`): reported to the primary, batched. */
  changed(address: string, open: number): void;
}

/** Why `next` cannot be applied to a running lb without a restart, if it cannot. */
export function reloadRefusal(current: LbOptions, next: LbOptions): string | undefined {
  const shape = (o: LbOptions): string => o.listeners.map((l) => `${l.name} ${l.address}:${l.port} ${l.mode} proxy=${l.proxyProtocol}`).join(', ');
  if (shape(current) !== shape(next)) return `the listeners changed (${shape(current)} -> ${shape(next)}): restart the lb to apply`;
  const admin = (o: LbOptions): string => (o.admin ? `${o.admin.host}:${o.admin.port}` : 'none');
  if (admin(current) !== admin(next)) return `the admin address changed (${admin(current)} -> ${admin(next)}): restart the lb to apply`;
  return undefined;
}

export interface LbStatus {
  draining: boolean;
  active: number;
  maxConnections: number;
  listeners: {
    name: string;
    mode: string;
    listen: string;
    proxyProtocol: boolean;
    active: number;
    healthyBackends: number;
    counters: ListenerCounters;
    backends: {
      address: string;
      up: boolean;
      active: number;
      served: number;
      failures: number;
      consecutiveFailures: number;
      consecutiveSuccesses: number;
      lastCheck?: { at: string; ok: boolean; detail?: string };
      lastFailure?: { at: string; reason: string; detail: string };
    }[];
  }[];
}

export async function startLb(initial: LbOptions, logger: Logger, worker?: WorkerRole): Promise<Lb> {
  let options = initial;
  const metrics = new LbMetrics();
  let draining = false;
  let active = 0;
  /** Open sessions per client address, over every listener (a worker's own; its primary sums the workers'). */
  const perClient = new ClientLimits(options.maxConnectionsPerClient);
  const listeners: Listener[] = [];

  for (const lo of options.listeners) {
    // In a worker the primary counts health (its metrics): a worker's would add up N times over.
    const events: BackendEvents = worker ? {} : healthEvents(metrics, lo.name);
    const pool = new BackendPool(lo.name, lo.backends, options.health, events, logger, worker?.authority);
    if (!worker) for (const b of pool.backends) metrics.backendUp.set({ listener: lo.name, backend: b.id }, 1);
    const l: Listener = {
      options: lo,
      pool,
      checker: worker ? undefined : new HealthChecker(pool, lo.mode, options.health, lo.proxyProtocol, events, options.sourceAddress),
      sessions: new Set(),
      counters: { connections: 0, retries: 0, rejectedMaxConnections: 0, rejectedPerClient: 0, noBackend: 0 },
      server: createServer({ allowHalfOpen: true, pauseOnConnect: false }),
    };
    l.server.on('connection', (client: Socket) => accept(l, client));
    l.server.on('error', (err) => logger.error({ err, listener: lo.name }, 'listener error'));
    metrics.connections.inc({ listener: lo.name }, 0);
    metrics.retries.inc({ listener: lo.name }, 0);
    listeners.push(l);
  }

  function accept(l: Listener, client: Socket): void {
    client.on('error', () => undefined);
    if (draining) {
      client.destroy();
      return;
    }
    const name = l.options.name;
    if (active >= options.maxConnections) {
      l.counters.rejectedMaxConnections++;
      metrics.rejected.inc({ listener: name, reason: 'max_connections' });
      if (l.options.mode === 'smtp') endSocket(client, 2000, TOO_MANY_REPLY);
      else client.destroy();
      return;
    }
    // The address as the MTAs' limits see it (the PROXY header's): IPv4 clients of a dual-stack listener unmapped.
    const address = clientAddress(client.remoteAddress);
    // This worker's own count holds exactly; the node's, summed by the primary, within a report.
    if (worker?.clients.full(address, perClient.count(address), options.maxConnectionsPerClient) || !perClient.tryOpen(address)) return refusePerClient(l, client);
    worker?.clients.changed(address, perClient.count(address));
    serve(l, client, () => {
      perClient.close(address);
      worker?.clients.changed(address, perClient.count(address));
    });
  }

  function refusePerClient(l: Listener, client: Socket): void {
    l.counters.rejectedPerClient++;
    metrics.rejected.inc({ listener: l.options.name, reason: 'max_connections_per_client' });
    if (l.options.mode === 'smtp') endSocket(client, 2000, TOO_MANY_FROM_CLIENT_REPLY);
    else client.destroy();
  }

  /** Relays an admitted session; `release` gives its per-client slot back when it ends. */
  function serve(l: Listener, client: Socket, release: () => void): void {
    const name = l.options.name;
    active++;
    l.counters.connections++;
    metrics.connections.inc({ listener: name });
    const session = new Session({ listener: l.options, pool: l.pool, options, metrics, counters: l.counters, logger }, client);
    l.sessions.add(session);
    void session.done.then(() => {
      active--;
      release();
      l.sessions.delete(session);
    });
    void session.run();
  }

  function status(): LbStatus {
    return {
      draining,
      active,
      maxConnections: options.maxConnections,
      listeners: listeners.map((l) => ({
        name: l.options.name,
        mode: l.options.mode,
        listen: `${l.options.address}:${l.port ?? l.options.port}`,
        proxyProtocol: l.options.proxyProtocol,
        active: l.sessions.size,
        healthyBackends: l.pool.healthyCount(),
        counters: { ...l.counters },
        backends: l.pool.backends.map((b) => ({
          address: b.id,
          up: b.up,
          active: b.active,
          served: b.served,
          failures: b.failures,
          consecutiveFailures: b.consecutiveFailures,
          consecutiveSuccesses: b.consecutiveSuccesses,
          lastCheck: b.lastCheck,
          lastFailure: b.lastFailure,
        })),
      })),
    };
  }

  function updateGauges(): void {
    for (const l of listeners) {
      metrics.active.set({ listener: l.options.name }, l.sessions.size);
      for (const b of l.pool.backends) metrics.backendActive.set({ listener: l.options.name, backend: b.id }, b.active);
    }
  }

  const admin = options.admin
    ? new LbAdminServer({
        draining: () => draining,
        ready: () => {
          const reasons = listeners.filter((l) => l.pool.healthyCount() === 0).map((l) => `listener ${l.options.name} has no healthy backend`);
          if (draining) reasons.push('draining');
          return { ok: reasons.length === 0, reasons };
        },
        status,
        metrics: async () => {
          updateGauges();
          return { contentType: metrics.registry.contentType, body: await metrics.registry.metrics() };
        },
      })
    : undefined;

  const ports: Record<string, number> = {};
  try {
    for (const l of listeners) {
      l.port = await new Promise<number>((resolve, reject) => {
        l.server.once('error', reject);
        l.server.listen({ host: l.options.address, port: l.options.port }, () => {
          l.server.removeListener('error', reject);
          const a = l.server.address();
          resolve(typeof a === 'object' && a ? a.port : l.options.port);
        });
      });
      ports[l.options.name] = l.port;
      logger.info({ listener: l.options.name, mode: l.options.mode, listen: `${l.options.address}:${l.port}`, backends: l.pool.backends.map((b) => b.id), proxyProtocol: l.options.proxyProtocol }, 'listening');
    }
  } catch (err) {
    for (const l of listeners) l.server.close();
    throw new VolleyError('ELISTEN', `cannot listen: ${(err as Error).message}`, { cause: err });
  }
  let adminPort: number | undefined;
  if (admin && options.admin) {
    try {
      adminPort = (await admin.listen(options.admin.port, options.admin.host)).port;
    } catch (err) {
      for (const l of listeners) l.server.close();
      throw new VolleyError('ELISTEN', `cannot listen on the admin port: ${(err as Error).message}`, { cause: err });
    }
    logger.info({ admin: `${options.admin.host}:${adminPort}` }, 'admin listening');
  }
  for (const l of listeners) l.checker?.start();
  // One sweep for every session's idle timeout: a timer per socket is refreshed by Node on every read and write.
  const sweepMs = (): number => Math.max(10, Math.min(1000, Math.floor(options.idleTimeoutMs / 4)));
  let sweeper: NodeJS.Timeout | undefined;
  const startSweep = (): void => {
    clearInterval(sweeper);
    sweeper = setInterval(() => {
      const now = Date.now();
      for (const l of listeners) for (const s of l.sessions) if (s.idleFor(now) >= options.idleTimeoutMs) s.closeIdle();
    }, sweepMs()).unref();
  };
  startSweep();

  let stopping: Promise<void> | undefined;
  async function stop(drainMs = options.drainTimeoutMs): Promise<void> {
    stopping ??= (async () => {
      draining = true;
      for (const l of listeners) l.checker?.stop();
      await Promise.all(listeners.map((l) => new Promise<void>((r) => l.server.close(() => r()))).concat(drained(drainMs)));
      clearInterval(sweeper);
      await admin?.close();
      logger.info('lb stopped');
    })();
    return stopping;
  }

  async function drained(drainMs: number): Promise<void> {
    const all = (): Session[] => listeners.flatMap((l) => [...l.sessions]);
    const open = all();
    if (open.length === 0) return;
    logger.info({ sessions: open.length, drainMs }, 'draining: waiting for open sessions');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      Promise.all(open.map((s) => s.done)).then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), drainMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      const left = all();
      logger.warn({ sessions: left.length }, 'drain timeout: closing the sessions left');
      for (const s of left) s.destroy();
      await Promise.all(left.map((s) => s.done));
    }
  }

  function closeSessions(): void {
    for (const l of listeners) for (const s of l.sessions) s.destroy();
  }

  function apply(next: LbOptions): void {
    const why = reloadRefusal(options, next);
    if (why) throw new VolleyError('EBADCONFIG', why);
    options = next;
    perClient.setLimit(next.maxConnectionsPerClient);
    for (const [i, l] of listeners.entries()) {
      const lo = next.listeners[i];
      l.options = lo;
      l.pool.setBackends(lo.backends);
      l.pool.health = next.health;
      if (!worker) {
        for (const b of l.pool.backends) metrics.backendUp.set({ listener: lo.name, backend: b.id }, b.up ? 1 : 0);
        l.checker?.stop();
        l.checker = new HealthChecker(l.pool, lo.mode, next.health, lo.proxyProtocol, healthEvents(metrics, lo.name), next.sourceAddress);
        if (!draining) l.checker.start();
      }
    }
    startSweep();
    logger.info({ listeners: next.listeners.map((l) => ({ name: l.name, backends: l.backends.map((b) => `${b.host}:${b.port}`) })) }, 'options reloaded');
  }

  function setUp(listener: string, backend: string, up: boolean): void {
    listeners.find((l) => l.options.name === listener)?.pool.setUp(backend, up);
  }

  async function metricsJson(): Promise<object[]> {
    updateGauges();
    return (await metrics.registry.getMetricsAsJSON()) as object[];
  }

  return { ports, adminPort, status, stop, closeSessions, metrics, apply, setUp, metricsJson };
}

function clientAddress(remote: string | undefined): string {
  if (!remote) return '';
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote;
}

/** A standalone lb's (or the primary's) health metrics for one listener. */
export function healthEvents(metrics: LbMetrics, listener: string): BackendEvents {
  return {
    onStateChange: (b, up) => metrics.backendUp.set({ listener, backend: b.id }, up ? 1 : 0),
    onFailure: (b, reason) => metrics.backendFailures.inc({ listener, backend: b.id, reason }),
    onCheck: (b, ok) => metrics.checks.inc({ listener, backend: b.id, result: ok ? 'ok' : 'failed' }),
  };
}
