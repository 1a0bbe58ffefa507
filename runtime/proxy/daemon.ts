// `volley proxy` as a whole: the config file, the ProxyServer, its admin port
// and metrics, and the reload that SIGHUP triggers (systemd's ExecReload).
import { VolleyError } from '../shared/errors';
import type { Logger } from '../shared/log';
import { loadProxyConfig, proxyServerOptions, type ProxyConfig } from './config';
import { ProxyAdminServer } from './admin-server';
import { ProxyMetrics } from './metrics';
import { bindProbe, proxyReadiness, type BindProbe } from './readiness';
import { ProxyServer } from './server';

/**
 * How long SIGTERM waits for transactions in flight: well inside systemd's
 * default 90 s TimeoutStopSec, and long enough for an MX's usual answer to
 * the final dot (one slower than this is cut, and its MTA retries later).
 */
export const PROXY_STOP_GRACE_MS = 30_000;

export interface ProxyDaemonOptions {
  configFile: string;
  /** --listen on the command line: wins over the file at start and on every reload. */
  listen?: { address: string; port: number };
  /** Builds the logger from the loaded config (its log_level); a reload changes that logger's level. */
  logger: (config: ProxyConfig) => Logger;
  /** How readiness checks that a sending IP can be bound (tests model a missing address). */
  probe?: BindProbe;
}

export class ProxyDaemon {
  readonly server: ProxyServer;
  readonly metrics: ProxyMetrics;
  readonly log: Logger;
  private readonly admin: ProxyAdminServer;
  private config: ProxyConfig;
  // Reloads run one at a time, in the order the signals came.
  private reloads: Promise<boolean> = Promise.resolve(true);

  /** Loads the config and its files; throws (VolleyError ECONFIG, ETLSFILES, ...) when they are bad. */
  constructor(private readonly options: ProxyDaemonOptions) {
    this.config = this.load();
    this.log = options.logger(this.config);
    this.server = new ProxyServer(proxyServerOptions(this.config, this.log));
    this.metrics = new ProxyMetrics(() => this.server.stats());
    this.admin = new ProxyAdminServer({
      ready: () => proxyReadiness(this.server, options.probe ?? bindProbe),
      metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() }),
    });
  }

  /** The admin port first, so that readiness answers 503 (not nothing) while the listener comes up. */
  async start(): Promise<{ port: number; adminPort: number }> {
    const { address, port } = this.config.adminListen;
    let adminPort: number;
    try {
      adminPort = await this.admin.listen(port, address);
    } catch (err) {
      throw new VolleyError('EADMINLISTEN', `admin_listen ${address}:${port}: cannot listen: ${(err as Error).message} (another proxy on this host? give each its own admin_listen)`);
    }
    this.log.info({ address, port: adminPort }, 'proxy: admin port listening (/healthz /readyz /metrics)');
    const listening = await this.server.start();
    return { port: listening.port, adminPort };
  }

  /** Reloads the config file; false (and the running config untouched) when it cannot be used. */
  reload(): Promise<boolean> {
    this.reloads = this.reloads.then(() => this.reloadNow());
    return this.reloads;
  }

  /** Graceful: transactions in flight get `graceMs` to finish (ProxyServer.stop); /readyz says 503 meanwhile. */
  async stop(graceMs = PROXY_STOP_GRACE_MS): Promise<void> {
    await this.server.stop(graceMs);
    await this.admin.close();
  }

  private load(): ProxyConfig {
    const config = loadProxyConfig(this.options.configFile);
    if (this.options.listen) config.listen = { ...this.options.listen };
    return config;
  }

  private async reloadNow(): Promise<boolean> {
    const file = this.options.configFile;
    this.log.info({ file }, 'proxy: reloading the config');
    let next: ProxyConfig;
    let outcome: ReturnType<ProxyServer['reload']>;
    try {
      next = this.load();
      outcome = this.server.reload(proxyServerOptions(next, this.log));
    } catch (err) {
      const e = err as Error & { code?: string };
      this.metrics.reloads.inc({ result: 'failed' });
      this.log.error({ file, code: e.code, problems: e.message }, `proxy: reload refused, the running config is kept: ${e.message.split('\n')[0]}`);
      return false;
    }
    const kept = [...outcome.kept];
    const admin = (a: ProxyConfig['adminListen']): string => `${a.address}:${a.port}`;
    if (admin(next.adminListen) !== admin(this.config.adminListen)) kept.push({ setting: 'admin_listen', running: admin(this.config.adminListen), wanted: admin(next.adminListen) });
    if ((next.logLevel ?? 'info') !== (this.config.logLevel ?? 'info')) outcome.applied.push('log_level');
    this.log.level = next.logLevel ?? process.env.VOLLEY_LOG_LEVEL ?? 'info';
    // What needs a restart keeps its running value, so the next reload compares against that.
    this.config = { ...next, listen: this.config.listen, adminListen: this.config.adminListen, throttleMerge: this.config.throttleMerge };
    for (const k of kept) this.log.warn(k, `proxy: reload: ${k.setting} changes only on a restart; still ${k.running} (the file says ${k.wanted})`);
    this.metrics.reloads.inc({ result: 'ok' });
    this.log.info({ file, applied: outcome.applied, needs_restart: kept.map((k) => k.setting), retired_mx_sessions: outcome.retired, revoked_links: outcome.revoked }, 'proxy: config reloaded');
    return true;
  }
}
