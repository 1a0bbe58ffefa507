// One worker of `volley proxy`: a ProxyServer on the node's shared listening
// socket (node:cluster), running the config its primary sends and asking the
// primary's throttle authority for control-channel decisions. It answers the
// primary's stats queries (for /metrics), applies reloads, QUITs an idle MX
// session for a key another worker is about to open (so an MX never sees more
// of this node's connections than one process would keep), and stops when the
// primary says so or on its own SIGTERM/SIGINT.
import type { Logger } from '../shared/log';
import type { ProxyConfig, ProxyMaterial } from './config';
import { proxyServerOptions } from './config';
import { PROXY_STOP_GRACE_MS } from './daemon';
import { asBuffer, isToProxyWorker, type FromProxyWorker } from './ipc';
import { ProxyServer } from './server';
import { WorkerThrottles } from './worker-throttles';

export interface ProxyWorkerOptions {
  worker: number;
  logger: (config: ProxyConfig) => Logger;
}

export function runProxyWorker(options: ProxyWorkerOptions): void {
  const { worker } = options;
  const send = (m: FromProxyWorker): void => {
    if (process.connected) process.send!(m);
  };
  const throttles = new WorkerThrottles(worker, send);
  let server: ProxyServer | undefined;
  let log: Logger | undefined;
  let stopping = false;
  // Opens waiting for the other workers to evict their idle sessions for the same key.
  const opening = new Map<number, () => void>();
  let nextOpen = 0;
  const beforeOpen = (key: string): Promise<void> =>
    new Promise((resolve) => {
      const id = ++nextOpen;
      opening.set(id, resolve);
      send({ type: 'opening', id, key });
    });

  const stop = (why: string, graceMs: number): void => {
    if (stopping) return;
    stopping = true;
    log?.info({ worker, why }, 'proxy worker: stopping (transactions in flight may finish)');
    void (server?.stop(graceMs) ?? Promise.resolve()).finally(() => {
      log?.flush();
      process.exit(0);
    });
  };

  const apply = (generation: number, config: ProxyConfig, raw: ProxyMaterial): void => {
    const material: ProxyMaterial = { tls: { key: asBuffer(raw.tls.key), cert: asBuffer(raw.tls.cert) }, secret: asBuffer(raw.secret), previousSecret: raw.previousSecret && asBuffer(raw.previousSecret) };
    if (!log) log = options.logger(config).child({ worker });
    else log.level = config.logLevel ?? process.env.VOLLEY_LOG_LEVEL ?? 'info';
    const next = proxyServerOptions(config, log, material);
    if (!server) {
      server = new ProxyServer(next, { authority: throttles, beforeOpen });
      const s = server;
      void s.start().then(
        () => {
          send({ type: 'applied', worker, generation, ok: true });
          send({ type: 'listening', worker });
        },
        (err: Error) => {
          log!.fatal({ err }, 'proxy worker: cannot listen');
          log!.flush();
          process.exit(1);
        },
      );
      return;
    }
    // The primary checked the pair and the files; a failure here keeps the running config, as a reload in one process does.
    try {
      const outcome = server.reload(next);
      log.info({ applied: outcome.applied, retired_mx_sessions: outcome.retired, revoked_links: outcome.revoked }, 'proxy worker: config applied');
      send({ type: 'applied', worker, generation, ok: true });
    } catch (err) {
      log.error({ err }, 'proxy worker: reload refused, the running config is kept');
      send({ type: 'applied', worker, generation, ok: false });
    }
  };

  process.on('message', (m: unknown) => {
    if (!isToProxyWorker(m)) return;
    if (m.type === 'config') {
      if (!stopping) apply(m.generation, m.config, m.material);
    } else if (m.type === 'throttle-reply') throttles.answer(m.id, m.value);
    else if (m.type === 'stats-query') {
      if (server) send({ type: 'stats', id: m.id, stats: server.stats() });
    } else if (m.type === 'evict') {
      void (server?.pool.evictOne(m.key) ?? Promise.resolve(0)).then((closed) => send({ type: 'evicted', id: m.id, worker, closed }));
    } else if (m.type === 'open-ok') {
      opening.get(m.id)?.();
      opening.delete(m.id);
    } else if (m.type === 'stop') stop('the node is stopping', m.graceMs);
  });
  // systemd signals every process of the unit: each worker lets its own transactions finish.
  process.on('SIGTERM', () => stop('SIGTERM', PROXY_STOP_GRACE_MS));
  process.on('SIGINT', () => stop('SIGINT', PROXY_STOP_GRACE_MS));
  // Reloads come from the primary; a SIGHUP sent to the whole unit must not kill a worker (its default action).
  process.on('SIGHUP', () => log?.debug('proxy worker: SIGHUP ignored (the primary reloads and tells every worker)'));
  // The primary gone (killed): node:cluster exits a worker at once when its
  // IPC channel drops unexpectedly, so no orphan keeps the shared port or
  // answers pings with nobody deciding its throttle asks; its transactions in
  // flight are cut, as a killed single process's would be (the MTAs retry).
  send({ type: 'config-request', worker });
}
