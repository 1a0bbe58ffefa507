// The proxy's admin HTTP port (admin_listen, default 127.0.0.1:7626):
// /healthz (the process answers), /readyz (proxyReadiness: 200 or 503 with
// the reasons) and /metrics (Prometheus). Read-only, so no token; it binds
// loopback unless the config says otherwise.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { adminHttpServer, closeHttpServer, pathOf, sendJson, serveOpenEndpoint, type OpenEndpoints } from '../shared/admin-http';
import { listen } from '../shared/listen';

export type ProxyAdminHandlers = Pick<OpenEndpoints, 'ready' | 'metrics'>;

export class ProxyAdminServer {
  private readonly server: Server;

  constructor(private readonly handlers: ProxyAdminHandlers) {
    this.server = adminHttpServer((req, res) => this.route(req, res));
  }

  /** Resolves with the bound port; rejects (EADDRINUSE and the like) when it cannot listen. */
  listen(port: number, address: string): Promise<number> {
    return listen(this.server, port, address);
  }

  close(): Promise<void> {
    return closeHttpServer(this.server);
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (await serveOpenEndpoint(req, res, this.handlers)) return;
    if (req.method !== 'GET') return sendJson(res, 405, { error: `${req.method} not allowed` });
    sendJson(res, 404, { error: `no endpoint ${pathOf(req)}` });
  }
}
