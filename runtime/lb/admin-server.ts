// The lb's admin HTTP port: /healthz (the lb itself, for Route 53 / NLB
// checks; 503 while draining), /readyz (every listener has a healthy
// backend), /status (JSON) and /metrics (Prometheus).
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { adminHttpServer, closeHttpServer, pathOf, sendJson, serveOpenEndpoint } from '../shared/admin-http';
import { listen } from '../shared/listen';

export interface LbAdminHandlers {
  draining(): boolean;
  ready(): { ok: boolean; reasons: string[] };
  status(): unknown | Promise<unknown>;
  metrics(): Promise<{ contentType: string; body: string }>;
}

export class LbAdminServer {
  private readonly server: Server;

  constructor(private readonly handlers: LbAdminHandlers) {
    this.server = adminHttpServer((req, res) => this.route(req, res));
  }

  async listen(port: number, address: string): Promise<{ port: number }> {
    return { port: await listen(this.server, port, address) };
  }

  close(): Promise<void> {
    return closeHttpServer(this.server);
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const h = this.handlers;
    const open = { health: () => (h.draining() ? { ok: false, draining: true } : { ok: true }), ready: () => h.ready(), metrics: () => h.metrics() };
    if (await serveOpenEndpoint(req, res, open)) return;
    if (req.method !== 'GET') return sendJson(res, 405, { error: `${req.method} not allowed` });
    const path = pathOf(req);
    if (path === '/status') return sendJson(res, 200, await h.status());
    sendJson(res, 404, { error: `no endpoint ${path}` });
  }
}
