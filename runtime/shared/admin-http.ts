// The HTTP plumbing every daemon's admin port shares (MTA, lb, proxy): the
// open endpoints /healthz, /readyz and /metrics that load balancers,
// bootstraps and Prometheus call without a token, JSON answers, a server
// whose handler errors become a JSON 500, and a close that does not wait on
// kept-alive connections. Each daemon adds its own endpoints around it.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface Readiness {
  ok: boolean;
  /** Why not, one line each; empty when ready. */
  reasons: string[];
}

export interface OpenEndpoints {
  /** /healthz: the process answers; a daemon that is draining may say 503 (ok false) so checks move traffic away. */
  health?(): { ok: boolean; [more: string]: unknown };
  /** /readyz: 200 when ok, else 503 with the reasons. */
  ready(): Readiness | Promise<Readiness>;
  /** /metrics: the Prometheus text and its content type. */
  metrics(): Promise<{ contentType: string; body: string }>;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}

/** The request's path, without the query. */
export function pathOf(req: IncomingMessage): string {
  return new URL(req.url ?? '/', 'http://admin').pathname;
}

/** Answers GET /healthz, /readyz or /metrics; false (nothing sent) for any other request. */
export async function serveOpenEndpoint(req: IncomingMessage, res: ServerResponse, endpoints: OpenEndpoints): Promise<boolean> {
  if (req.method !== 'GET') return false;
  const path = pathOf(req);
  if (path === '/healthz') {
    const h = endpoints.health?.() ?? { ok: true };
    sendJson(res, h.ok ? 200 : 503, h);
    return true;
  }
  if (path === '/readyz') {
    const r = await endpoints.ready();
    sendJson(res, r.ok ? 200 : 503, r);
    return true;
  }
  if (path === '/metrics') {
    const m = await endpoints.metrics();
    res.writeHead(200, { 'content-type': m.contentType });
    res.end(m.body);
    return true;
  }
  return false;
}

/**
 * An HTTP server for an admin port: `route` answers each request; an error
 * it throws becomes a JSON 500 (or, once an answer has begun, ends the
 * connection) instead of a request left hanging.
 */
export function adminHttpServer(route: (req: IncomingMessage, res: ServerResponse) => Promise<void>): Server {
  const server = createServer((req, res) => {
    route(req, res).catch((err: Error) => {
      if (res.headersSent) res.destroy(err);
      else sendJson(res, 500, { error: err.message });
    });
  });
  // Checkers poll; a short keep-alive frees their idle connections soon.
  server.keepAliveTimeout = 1000;
  return server;
}

/** Stops listening and cuts kept-alive connections; resolves at once for a server that never listened. */
export function closeHttpServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
