// The lb's admin HTTP port: /healthz (the lb itself, for Route 53 / NLB
// checks; 503 while draining), /readyz (every listener has a healthy
// backend), /status (JSON) and /metrics (Prometheus).
import { createServer, type Server, type ServerResponse } from 'node:http';

export interface LbAdminHandlers {
  draining(): boolean;
  ready(): { ok: boolean; reasons: string[] };
  status(): unknown;
  metrics(): Promise<{ contentType: string; body: string }>;
}

export class LbAdminServer {
  private readonly server: Server;

  constructor(private readonly handlers: LbAdminHandlers) {
    this.server = createServer((req, res) => {
      this.route(req.method ?? 'GET', req.url ?? '/', res).catch((err: Error) => json(res, 500, { error: err.message }));
    });
    this.server.keepAliveTimeout = 1000;
  }

  listen(port: number, address: string): Promise<{ port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, address, () => {
        this.server.removeListener('error', reject);
        const a = this.server.address();
        resolve({ port: typeof a === 'object' && a ? a.port : port });
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async route(method: string, url: string, res: ServerResponse): Promise<void> {
    const path = new URL(url, 'http://admin').pathname;
    if (method !== 'GET') return json(res, 405, { error: `${method} not allowed` });
    if (path === '/healthz') return this.handlers.draining() ? json(res, 503, { ok: false, draining: true }) : json(res, 200, { ok: true });
    if (path === '/readyz') {
      const r = this.handlers.ready();
      return json(res, r.ok ? 200 : 503, r);
    }
    if (path === '/status') return json(res, 200, this.handlers.status());
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
