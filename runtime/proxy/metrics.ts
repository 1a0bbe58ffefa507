// The proxy's Prometheus metrics, in a registry of its own (one per daemon, so
// tests can run several in one process). The traffic counters live in
// ProxyServer.stats() (under --workers: summed over the workers by the
// primary) and are read when /metrics is scraped; reloads are counted here as
// they happen.
import { Counter, Gauge, Registry } from 'prom-client';
import type { ProxyStats } from './server';

type Totals = Exclude<keyof ProxyStats, 'clients' | 'mxIdle'>;

const TOTALS: Record<Totals, { name: string; help: string }> = {
  authenticated: { name: 'volley_proxy_authenticated_total', help: 'MTA connections that passed the HMAC handshake' },
  authenticatedPrevious: { name: 'volley_proxy_authenticated_previous_secret_total', help: 'Of those, the ones that proved the previous secret (a rotation not finished on every MTA)' },
  refused: { name: 'volley_proxy_refused_total', help: 'Connections refused: source not in allow_from, failed TLS or failed authentication' },
  mxOpened: { name: 'volley_proxy_mx_opened_total', help: 'MX sessions opened' },
  mxReused: { name: 'volley_proxy_mx_reused_total', help: 'MX sessions handed out again from the idle pool' },
  transactions: { name: 'volley_proxy_transactions_total', help: 'SMTP transactions relayed to MX servers' },
};

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly reloads = new Counter({ name: 'volley_proxy_reloads_total', help: 'Config reloads (SIGHUP) by result: ok, or failed (the running config was kept)', labelNames: ['result'], registers: [this.registry] });

  /** `workers`: under `--workers`, how many are listening now (the gauge is left out in one process). */
  constructor(stats: () => ProxyStats, workers?: () => number) {
    // Both results exist from the start, so a dashboard sees 0 rather than nothing.
    this.reloads.inc({ result: 'ok' }, 0);
    this.reloads.inc({ result: 'failed' }, 0);
    if (workers) new Gauge({ name: 'volley_proxy_workers', help: 'Worker processes listening now', registers: [this.registry], collect() { this.set(workers()); } });
    new Gauge({ name: 'volley_proxy_clients', help: 'MTA connections open now', registers: [this.registry], collect() { this.set(stats().clients); } });
    new Gauge({ name: 'volley_proxy_mx_idle', help: 'Idle MX sessions kept for reuse now', registers: [this.registry], collect() { this.set(stats().mxIdle); } });
    for (const [field, { name, help }] of Object.entries(TOTALS) as [Totals, { name: string; help: string }][]) {
      // The server keeps the running totals; a scrape copies them in.
      new Counter({ name, help, registers: [this.registry], collect() { this.reset(); this.inc(stats()[field]); } });
    }
  }
}
