import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listen } from '../../shared/listen';

export type QueueAction = 'queue' | 'pause' | 'resume' | 'retry' | 'purge' | 'message';

export interface AdminHandlers {
  /** Ready for traffic: spool writable, config loaded, every worker up. */
  ready(): { ok: boolean; reasons: string[] };
  metrics(): Promise<{ contentType: string; body: string }>;
  /** Queue status, control (pause, resume, retry, purge) and one message's story. */
  queue(action: QueueAction, args: Record<string, string>): Promise<unknown>;
  refresh(): Promise<{ ok: boolean; errors?: string[] }>;
}

/**
 * The admin HTTP port: health for the NLB and Route 53 checks, Prometheus
 * metrics, queue status and config refresh. Bound to loopback by default: it
 * is for the node's operators and its health checkers, not the world.
 */
export class AdminServer {
  private readonly server: Server;

  constructor(private readonly handlers: AdminHandlers) {
    this.server = createServer((req, res) => {
      this.route(req, res).catch((err: Error) => json(res, 500, { error: err.message }));
    });
  }

  async listen(port: number, address: string): Promise<{ port: number }> {
    return { port: await listen(this.server, port, address) };
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    const args: Record<string, string> = {};
    for (const k of ['domain', 'vmta', 'id']) {
      const v = url.searchParams.get(k);
      if (v) args[k] = v;
    }
    if (req.method === 'GET' && path === '/healthz') return json(res, 200, { ok: true });
    if (req.method === 'GET' && path === '/readyz') {
      const r = this.handlers.ready();
      return json(res, r.ok ? 200 : 503, r);
    }
    if (req.method === 'GET' && path === '/metrics') {
      const m = await this.handlers.metrics();
      res.writeHead(200, { 'content-type': m.contentType });
      res.end(m.body);
      return;
    }
    if (req.method === 'GET' && path === '/queue') return json(res, 200, await this.handlers.queue('queue', args));
    const msg = /^\/queue\/messages\/([0-9A-Za-z]+)$/.exec(path);
    if (req.method === 'GET' && msg) {
      const r = (await this.handlers.queue('message', { id: msg[1] })) as { queued: boolean; attempts: unknown[] };
      return json(res, r.queued || r.attempts.length > 0 ? 200 : 404, r);
    }
    const action = /^\/queue\/(pause|resume|retry|purge)$/.exec(path);
    if (req.method === 'POST' && action) {
      // Purge cannot be undone: a node-wide one is refused rather than taken
      // from a forgotten flag (pause/resume/retry of everything are harmless).
      if (action[1] === 'purge' && Object.keys(args).length === 0) {
        return json(res, 400, { error: 'purge needs a selector: domain, vmta or id (volley queue purge --domain D | --vmta V | --id ID)', code: 'ENOSELECTOR' });
      }
      return json(res, 200, await this.handlers.queue(action[1] as QueueAction, args));
    }
    if (req.method === 'POST' && path === '/config/refresh') {
      const r = await this.handlers.refresh();
      return json(res, r.ok ? 200 : 422, r);
    }
    json(res, 404, { error: `no endpoint ${req.method} ${path}` });
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(text + '\n');
}
