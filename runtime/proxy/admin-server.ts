// The proxy's admin HTTP port (admin_listen, default 127.0.0.1:7626):
// /healthz (the process answers), /readyz (proxyReadiness: 200 or 503 with
// the reasons) and /metrics (Prometheus). Read-only, so no token; it binds
// loopback unless the config says otherwise.
import { createServer, type Server, type ServerResponse } from 'node:http';
import { listen } from '../shared/listen';
import type { Readiness } from './readiness';

export interface ProxyAdminHandlers {
  ready(): Promise<Readiness>;
  metrics(): Promise<{ contentType: string; body: string }>;
}

export class ProxyAdminServer {
  private readonly server: Server;

  constructor(private readonly handlers: ProxyAdminHandlers) {
    this.server = createServer((req, res) => {
      this.route(req.method ?? 'GET', req.url ?? '/', res).catch((err: Error) => json(res, 500, { error: err.message }));
    });
    this.server.keepAliveTimeout = 1000;
  }

  /** Resolves with the bound port; rejects (EADDRINUSE and the like) when it cannot listen. */
  listen(port: number, address: string): Promise<number> {
    return listen(this.server, port, address);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async route(method: string, url: string, res: ServerResponse): Promise<void> {
    const path = new URL(url, 'http://admin').pathname;
    if (method !== 'GET') return json(res, 405, { error: `${method} not allowed` });
    if (path === '/healthz') return json(res, 200, { ok: true });
    if (path === '/readyz') {
      const r = await this.handlers.ready();
      return json(res, r.ok ? 200 : 503, r);
    }
    if (path === '/metrics') {
      const m = await this.handlers.metrics();
      res.writeHead(200, { 'content-type': m.contentType });
      res.end(m.body);
      return;
    }
    json(res, 404, { error: `no endpoint ${path}` });
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}
