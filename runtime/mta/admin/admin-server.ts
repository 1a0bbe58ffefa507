// The MTA's admin HTTP port. Health and metrics are open (load balancers and
// Prometheus hold no secret); the queue and config API needs a bearer token
// from admin.tokens, and every call that changes something is logged with
// the token's name and the caller's address.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { adminHttpServer, closeHttpServer, pathOf, sendJson as json, serveOpenEndpoint, type Readiness } from '../../shared/admin-http';
import { bearerTokenName, type NamedToken } from '../../shared/bearer-token';
import { errorCode } from '../../shared/errors';
import { listen } from '../../shared/listen';

export type QueueAction = 'queue' | 'pause' | 'resume' | 'retry' | 'purge' | 'message';

export interface AdminHandlers {
  /** Ready for traffic: spool writable, config loaded, every worker up (plus detail, such as the event sinks'). */
  ready(): Readiness | Promise<Readiness>;
  metrics(): Promise<{ contentType: string; body: string }>;
  /** Queue status, control (pause, resume, retry, purge) and one message's story. */
  queue(action: QueueAction, args: Record<string, string>): Promise<unknown>;
  refresh(): Promise<{ ok: boolean; errors?: string[] }>;
  /** The event queue: per-sink status, and a replay of a window to one sink. */
  events?: {
    status(): Promise<unknown>;
    replay(sink: string, from: string): unknown;
  };
  /** `volley drain`: stop intake and delivery on every worker (their attempts in flight counted), or undo it. */
  drain?(action: 'stop' | 'resume'): Promise<{ draining: boolean; queued: number; inflight: number }>;
  /** Stops the node as SIGTERM does (`volley drain`, once the events are out, where no systemd runs it). */
  shutdown?(reason: string): void;
}

export interface AdminAuth {
  /** The tokens in force (admin.tokens of the running config: a refresh changes them). */
  tokens(): readonly NamedToken[];
  logger: Logger;
}

/**
 * The admin HTTP port: health for the NLB and Route 53 checks, Prometheus
 * metrics, queue status and control, config refresh. Bound to loopback by
 * default; the health endpoints may also get an address of their own
 * (admin.health_listen) for load balancers that must not reach the rest.
 */
export class AdminServer {
  private readonly server: Server;
  /** admin.health_listen: the open endpoints alone, on an address of their own. */
  private readonly health: Server;

  constructor(
    private readonly handlers: AdminHandlers,
    private readonly auth: AdminAuth,
  ) {
    this.server = adminHttpServer((req, res) => this.route(req, res));
    this.health = adminHttpServer(async (req, res) => {
      if (!(await this.routeOpen(req, res))) json(res, 404, { error: `no endpoint ${req.method} ${req.url} here: this address serves /healthz, /readyz and /metrics` });
    });
  }

  async listen(port: number, address: string): Promise<{ port: number }> {
    return { port: await listen(this.server, port, address) };
  }

  async listenHealth(port: number, address: string): Promise<{ port: number }> {
    return { port: await listen(this.health, port, address) };
  }

  close(): Promise<void> {
    return Promise.all([closeHttpServer(this.server), closeHttpServer(this.health)]).then(() => undefined);
  }

  /** /healthz, /readyz and /metrics, which need no token; false when the request is for something else. */
  private routeOpen(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    return serveOpenEndpoint(req, res, this.handlers);
  }

  /** The caller's token name, or undefined after answering 401. */
  private authenticate(req: IncomingMessage, res: ServerResponse): string | undefined {
    const tokens = this.auth.tokens();
    const name = bearerTokenName(req, tokens);
    if (name !== undefined) return name;
    const from = req.socket.remoteAddress;
    // The path alone: a token sent in the query string (?access_token=, a
    // script's mistake) is refused, and must not be kept in the log either.
    this.auth.logger.warn({ from, method: req.method, path: pathOf(req) }, 'admin: refused a call without a valid token');
    res.setHeader('www-authenticate', 'Bearer');
    json(res, 401, {
      code: 'EUNAUTHORIZED',
      error:
        tokens.length === 0
          ? 'no admin.tokens are configured: the admin API is closed (add one from `volley config hash-token`)'
          : 'a valid admin token is required: Authorization: Bearer <token> (volley: VOLLEY_ADMIN_TOKEN or --token-file)',
    });
    return undefined;
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    const args: Record<string, string> = {};
    for (const k of ['domain', 'vmta', 'id']) {
      const v = url.searchParams.get(k);
      if (v) args[k] = v;
    }
    if (await this.routeOpen(req, res)) return;
    const who = this.authenticate(req, res);
    if (who === undefined) return;
    // Who changed what: a purge or a refresh can be traced to a token and an address.
    const audit = (what: string): void => this.auth.logger.info({ token: who, from: req.socket.remoteAddress, args }, `admin: ${what}`);
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
      audit(`queue ${action[1]}`);
      return json(res, 200, await this.handlers.queue(action[1] as QueueAction, args));
    }
    if (path === '/events/status' && req.method === 'GET' && this.handlers.events) return json(res, 200, await this.handlers.events.status());
    if (path === '/events/replay' && req.method === 'POST' && this.handlers.events) {
      const body = await readJson(req).catch((err: Error) => err);
      if (body instanceof Error) return json(res, 400, { error: body.message, code: 'EBADBODY' });
      const { sink, from } = body as { sink?: unknown; from?: unknown };
      if (typeof sink !== 'string' || typeof from !== 'string') return json(res, 400, { error: 'replay needs {"sink": NAME, "from": TIME} (an ISO time, or a duration ago such as 2h)', code: 'EBADBODY' });
      audit(`events replay of ${sink} from ${from}`);
      try {
        return json(res, 202, this.handlers.events.replay(sink, from));
      } catch (err) {
        const code = errorCode(err);
        return json(res, code === 'ENOSINK' ? 404 : code === 'EREPLAYING' ? 409 : code === 'EBADTIME' ? 400 : 500, { error: (err as Error).message, code });
      }
    }
    const drain = /^\/drain\/(stop|resume)$/.exec(path);
    if (req.method === 'POST' && drain && this.handlers.drain) {
      audit(`drain ${drain[1]}`);
      return json(res, 200, await this.handlers.drain(drain[1] as 'stop' | 'resume'));
    }
    if (req.method === 'POST' && path === '/node/stop' && this.handlers.shutdown) {
      audit('node stop');
      json(res, 202, { stopping: true });
      return this.handlers.shutdown('admin');
    }
    if (req.method === 'POST' && path === '/config/refresh') {
      audit('config refresh');
      const r = await this.handlers.refresh();
      return json(res, r.ok ? 200 : 422, r);
    }
    json(res, 404, { error: `no endpoint ${req.method} ${path}` });
  }
}

/** A small JSON request body (64 KB at most). */
function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 65536) {
        reject(new Error('the request body is over 64 KB'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
      } catch {
        reject(new Error('the request body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}
