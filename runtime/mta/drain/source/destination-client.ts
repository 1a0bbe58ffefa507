// One drain destination as `volley drain` sees it: `host[:port]` (default
// DEFAULT_DRAIN_PORT), a keep-alive HTTPS agent, signed requests (protocol.ts)
// and the answer sorted into what the distributor does next: per-message
// results, "try the next destination" (down, timed out, 503, a 5xx), or "this
// destination will never take these" (401, 403, 409, 400; and 413, which the distributor answers by splitting the batch).
import { Agent, request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { VolleyError } from '../../../shared/errors';
import { DRAIN_CONTENT_TYPE, DRAIN_PATH_HAVE, DRAIN_PATH_MESSAGES, signRequest, type DrainResult, type HaveResponse } from '../protocol';

/** The drain endpoint's port when a destination names none (drain.listen.port's default). */
export const DEFAULT_DRAIN_PORT = 8443;

export interface DestinationAddress {
  /** host:port, as the journal and the progress lines name it. */
  label: string;
  host: string;
  port: number;
}

/** `host`, `host:port`, `[v6]` or `[v6]:port`. */
export function parseDestination(value: string): DestinationAddress {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s[\]]+))(?::(\d{1,5}))?$/.exec(value.trim());
  const port = m?.[3] === undefined ? DEFAULT_DRAIN_PORT : Number(m[3]);
  if (!m || port < 1 || port > 65535) throw new VolleyError('EBADDEST', `destination "${value}" is not host[:port]`);
  const host = m[1] ?? m[2];
  return { label: m[1] ? `[${host}]:${port}` : `${host}:${port}`, host, port };
}

export type SendOutcome =
  | { kind: 'answered'; results: DrainResult[] }
  /**
   * Not this time; this one is tried again on its next turn. `untaken`: the
   * destination certainly did not take the batch (never reached, or it said
   * 503), so the batch may go to the next destination. Otherwise (no answer
   * after the request went out) it may have: the batch waits for this one.
   */
  | { kind: 'retry'; reason: string; untaken: boolean }
  /** This destination refuses the request as such and always will (wrong secret, address not allowed, itself). */
  | { kind: 'never'; status: number; reason: string };

export interface ClientOptions {
  secret: Buffer;
  /** This node's id (x-volley-drain-node; a destination refuses its own). */
  node: string;
  /** PEM certificates to trust besides the system's (self-signed destinations); insecure skips verification. */
  ca?: Buffer;
  insecure?: boolean;
  /** --bind-ip: the local address of every connection. */
  localAddress?: string;
  timeoutMs: number;
  maxSockets: number;
}

const NEVER = new Set([400, 401, 403, 409, 413]);

export class DestinationClient {
  private readonly agent: Agent;

  constructor(
    readonly address: DestinationAddress,
    private readonly options: ClientOptions,
  ) {
    this.agent = new Agent({
      keepAlive: true,
      maxSockets: options.maxSockets,
      ca: options.ca,
      rejectUnauthorized: !options.insecure,
      localAddress: options.localAddress,
    });
  }

  async sendBatch(body: Buffer, ids: readonly string[]): Promise<SendOutcome> {
    const answer = await this.post(DRAIN_PATH_MESSAGES, DRAIN_CONTENT_TYPE, body);
    if ('error' in answer) return { kind: 'retry', reason: answer.error, untaken: !answer.reached };
    const { status, text } = answer;
    if (status === 200) {
      let results: DrainResult[] | undefined;
      try {
        results = (JSON.parse(text) as { results?: DrainResult[] }).results;
      } catch {
        // handled below
      }
      // An answer that does not name every id in order acknowledges nothing: the batch is tried again.
      if (!Array.isArray(results) || results.length !== ids.length || results.some((r, i) => r.id !== ids[i])) {
        return { kind: 'retry', reason: 'answer does not list the batch\'s messages in order', untaken: false };
      }
      return { kind: 'answered', results };
    }
    const reason = `HTTP ${status}: ${reasonOf(text)}`;
    return NEVER.has(status) ? { kind: 'never', status, reason } : { kind: 'retry', reason, untaken: status === 503 };
  }

  /**
   * Which of `ids` the destination holds or held (its dedupe store), and which
   * it cannot say yet (a store of them unanswered there: ask again); undefined
   * when it cannot answer now. A destination of an earlier release answers
   * such a request 500 whole (undefined here).
   */
  async have(ids: readonly string[]): Promise<{ have: Set<string>; unknown: Set<string> } | { never: string } | undefined> {
    const answer = await this.post(DRAIN_PATH_HAVE, 'application/json', Buffer.from(JSON.stringify({ ids, partial: true })));
    if ('error' in answer) return undefined;
    if (NEVER.has(answer.status)) return { never: `HTTP ${answer.status}: ${reasonOf(answer.text)}` };
    if (answer.status !== 200) return undefined;
    try {
      const r = JSON.parse(answer.text) as HaveResponse;
      return { have: new Set(r.have), unknown: new Set(r.unknown ?? []) };
    } catch {
      return undefined;
    }
  }

  close(): void {
    this.agent.destroy();
  }

  /** `reached`: the connection (and its TLS handshake) was up, so the request may have been read. */
  private post(path: string, contentType: string, body: Buffer): Promise<{ status: number; text: string } | { error: string; reached: boolean }> {
    const { host, port } = this.address;
    return new Promise((resolve) => {
      let reached = false;
      const req = request(
        {
          host,
          port,
          path,
          method: 'POST',
          agent: this.agent,
          timeout: this.options.timeoutMs,
          headers: { 'content-type': contentType, 'content-length': body.length, ...signRequest(this.options.secret, this.options.node, body) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', (err) => resolve({ error: err.message, reached: true }));
        },
      );
      req.on('socket', (socket: TLSSocket) => {
        // A kept-alive socket is up already; a new one is once its handshake is done.
        if (!socket.connecting && socket.encrypted && socket.authorized !== undefined) reached = true;
        else socket.once('secureConnect', () => (reached = true));
      });
      // A destination that stops answering mid-batch: the batch is retried elsewhere
      // (the journal keeps it sticky to this one if it may have been committed; see distributor).
      req.on('timeout', () => req.destroy(new Error(`no answer in ${this.options.timeoutMs} ms`)));
      req.on('error', (err) => resolve({ error: err.message, reached }));
      req.end(body);
    });
  }
}

function reasonOf(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: unknown; reason?: unknown; message?: unknown };
    const e = j.error ?? j.reason ?? j.message;
    if (typeof e === 'string') return e;
    if (e !== undefined) return JSON.stringify(e);
  } catch {
    // not JSON
  }
  return text.slice(0, 200) || '(no body)';
}
