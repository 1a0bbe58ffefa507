import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { bearerTokenName } from '../../shared/bearer-token';
import { CidrList } from '../../shared/cidr';
import type { VolleyConfig } from '../../shared/config/types';
import { listen } from '../../shared/listen';
import { readProxyHeader } from '../../shared/proxy-header';
import type { TlsMaterial } from '../../shared/tls-files';
import { metrics } from '../metrics';
import { newMessageId } from '../message-id';
import { checkBody } from './body-check';
import { BUSY_RESPONSE, ConnectionBound } from './connection-bound';
import { extractControlHeaders, receivedHeader, volleyIdHeader } from './headers';
import { metadataStrings, renderHttpMessage, validateHttpMessage, type FieldError, type HttpMessage } from './http-message';
import { Intake, IntakeError } from './intake';
import { readBody, sendJson } from '../../shared/http-body';

export interface HttpApiOptions {
  config: VolleyConfig;
  intake: Intake;
  tls?: TlsMaterial;
  logger: Logger;
  bind?: { address: string; port: number };
  /** How long a kept-alive connection may sit between requests (default 65 s; tests shorten it). */
  keepAliveTimeoutMs?: number;
}

type Result = { index: number; id: string } | { index: number; error: { code: string; message: string; fields?: FieldError[] } };

/** How long a trusted proxy may take to send its PROXY header (it sends it on connect). */
const PROXY_HEADER_TIMEOUT_MS = 10_000;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The HTTP submission API: `POST /v1/messages` with one message or
 * `{ "messages": [...] }`. Each message gets its own result (an id, or an
 * error naming the field); a message is acknowledged only once durable.
 */
export class HttpApi {
  private readonly server: Server;
  private config: VolleyConfig;
  private trustedProxies = new CidrList([]);
  /** The client a trusted proxy's PROXY header named, by the socket requests arrive on (over TLS, the TLS socket). */
  private readonly proxiedClient = new WeakMap<Socket, string>();
  /**
   * Over TLS, the client named on a raw socket until its TLS socket is up,
   * keyed by the peer's address and port (the TLS socket reports the same):
   * Node's public API has no other link from a TLS socket to the raw one.
   */
  private readonly namedBeforeTls = new Map<string, string>();
  /** The connections the HTTP layer holds: at most http.max_connections. */
  private readonly bound = new ConnectionBound(BUSY_RESPONSE);

  constructor(private readonly options: HttpApiOptions) {
    this.config = options.config;
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      this.handle(req, res).catch((err: unknown) => {
        if (err instanceof HttpError) return send(res, err.status, { error: { code: err.code, message: err.message } });
        options.logger.error({ err }, 'http: request failed');
        send(res, 500, { error: { code: 'internal', message: 'internal error' } });
      });
    };
    this.server = options.tls ? createHttpsServer({ key: options.tls.key, cert: options.tls.cert }, handler) : createHttpServer(handler);
    this.server.keepAliveTimeout = options.keepAliveTimeoutMs ?? 65_000;
    this.apply(options.config);
    this.takeConnections();
  }

  apply(config: VolleyConfig): void {
    // http.max_connections is read from here at each connection (./connection-bound.ts), so a
    // new bound applies to the next one; Node's server.maxConnections is not used: it closes a
    // connection past it without a byte, which an injector sees as an error and does not retry.
    this.config = config;
    // The same list as SMTP: one lb (or HAProxy, or NLB) fronts both ports.
    this.trustedProxies = new CidrList(config.smtp.trustedProxies);
  }

  /** Connections the HTTP layer holds now (bounded by http.max_connections). */
  get connections(): number {
    return this.bound.size;
  }

  /**
   * Puts this API's own handling in front of the server's: the connection
   * bound, and the PROXY header of a trusted proxy.
   *
   * The bound is checked where the HTTP layer would take the socket: on a
   * plain server at accept, before any PROXY header (so a connection waiting
   * on one counts); over TLS once the handshake is done, since only then can
   * the 503 be read (as SMTP's implicit-TLS listener answers its 421 over TLS).
   *
   * A connection from a trusted proxy starts with a PROXY v1/v2 header, which
   * Node's HTTP parser would answer with an empty 400. The server's own
   * 'connection' handlers (HTTP, or TLS then HTTP) are moved behind one that
   * takes the header off first and remembers the client it names, so logs,
   * Received headers and limits see the real client. Over TLS requests come on
   * the TLS socket, so the secureConnection hook carries the name over to it.
   */
  private takeConnections(): void {
    const server = this.server;
    const tls = this.options.tls !== undefined;
    const admit = (socket: Socket): boolean => this.bound.admit(socket, this.config.http.maxConnections);
    const handlers = server.listeners('connection') as ((socket: Socket) => void)[];
    server.removeAllListeners('connection');
    const handOn = (socket: Socket): void => {
      for (const h of handlers) h.call(server, socket);
    };
    if (tls) {
      const httpHandlers = server.listeners('secureConnection') as ((socket: TLSSocket) => void)[];
      server.removeAllListeners('secureConnection');
      server.on('secureConnection', (tlsSocket: TLSSocket) => {
        const key = peerKey(tlsSocket);
        const client = this.namedBeforeTls.get(key);
        if (client !== undefined) {
          this.namedBeforeTls.delete(key);
          this.proxiedClient.set(tlsSocket, client);
        }
        if (!admit(tlsSocket)) return;
        for (const h of httpHandlers) h.call(server, tlsSocket);
      });
    }
    server.on('connection', (socket: Socket) => {
      if (!tls && !admit(socket)) return;
      if (!this.trustedProxies.has(socket.remoteAddress ?? '')) return handOn(socket);
      socket.on('error', () => socket.destroy());
      readProxyHeader(socket, PROXY_HEADER_TIMEOUT_MS).then(
        (info) => {
          if (info.sourceAddress && this.options.tls) {
            const key = peerKey(socket);
            this.namedBeforeTls.set(key, info.sourceAddress);
            socket.once('close', () => this.namedBeforeTls.delete(key));
          } else if (info.sourceAddress) this.proxiedClient.set(socket, info.sourceAddress);
          handOn(socket);
          // The reader paused the socket; the bytes after the header are waiting.
          socket.resume();
        },
        (err: Error) => {
          this.options.logger.warn({ err, peer: socket.remoteAddress }, 'http: bad PROXY header from a trusted proxy');
          const text = JSON.stringify({ error: { code: 'bad_proxy_header', message: err.message } });
          socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`);
          socket.destroySoon();
        },
      );
    });
  }

  /** The client's address: the one a trusted proxy named, else the peer's. */
  private clientOf(req: IncomingMessage): string | undefined {
    return this.proxiedClient.get(req.socket) ?? req.socket.remoteAddress;
  }

  async listen(): Promise<void> {
    const bind = this.options.bind ?? { address: this.config.http.address, port: this.config.http.port };
    await listen(this.server, bind.port, bind.address);
  }

  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/v1/messages') throw new HttpError(404, 'not_found', `no endpoint ${path}`);
    if (req.method !== 'POST') throw new HttpError(405, 'method_not_allowed', 'use POST');
    const token = bearerTokenName(req, this.config.http.tokens);
    if (token === undefined) {
      metrics.rejected.inc({ reason: 'bad-token' });
      res.setHeader('WWW-Authenticate', 'Bearer');
      throw new HttpError(401, 'unauthorized', 'missing or wrong bearer token');
    }
    const body = await readRequest(req, this.config.http.maxBodySize);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch (err) {
      metrics.rejected.inc({ reason: 'bad-json' });
      throw new HttpError(400, 'bad_json', `request body is not valid JSON: ${(err as Error).message}`);
    }
    const batch = isObject(parsed) && Array.isArray(parsed.messages);
    const items: unknown[] = batch ? (parsed as { messages: unknown[] }).messages : [parsed];
    if (items.length === 0) throw new HttpError(400, 'empty_batch', 'messages is empty');
    if (items.length > this.config.http.maxBatch) throw new HttpError(413, 'batch_too_large', `at most ${this.config.http.maxBatch} messages per request`);
    const client = { ip: this.clientOf(req), user: token };
    const results = await Promise.all(items.map((item, index) => this.submitOne(item, index, client)));
    if (!batch) {
      const r = results[0];
      if ('id' in r) return send(res, 200, { id: r.id });
      return send(res, statusOf(r.error.code), { error: r.error });
    }
    const allUnavailable = results.every((r) => 'error' in r && statusOf(r.error.code) === 503);
    send(res, allUnavailable ? 503 : 200, { accepted: results.filter((r) => 'id' in r).length, results });
  }

  /** `client.user` is the token's name: who submitted, as the AUTH user is for SMTP. */
  private async submitOne(item: unknown, index: number, client: { ip?: string; user: string }): Promise<Result> {
    const fields = validateHttpMessage(item);
    if (fields.length > 0) {
      metrics.rejected.inc({ reason: 'bad-field' });
      return { index, error: { code: 'invalid_message', message: 'the message has invalid fields', fields } };
    }
    const m = item as HttpMessage;
    const t0 = process.hrtime.bigint();
    try {
      const rendered = await renderHttpMessage(m);
      const problem = checkBody(rendered);
      if (problem) {
        metrics.rejected.inc({ reason: problem });
        return { index, error: { code: 'invalid_message', message: `message body: ${problem}`, fields: [{ field: 'raw', message: problem }] } };
      }
      const { control, message } = extractControlHeaders(rendered);
      const id = newMessageId();
      const received = receivedHeader({ ip: client.ip, by: this.config.hostname, protocol: 'HTTP', id });
      const entry = await this.options.intake.submit({
        id,
        from: m.from,
        to: [...m.to, ...(m.cc ?? []), ...(m.bcc ?? [])],
        message: Buffer.concat([Buffer.from(received + volleyIdHeader(id), 'latin1'), message]),
        via: 'http',
        client,
        pool: m.pool ?? control.pool,
        vmta: m.vmta ?? control.vmta,
        meta: { ...control.meta, ...metadataStrings(m.metadata) },
      });
      metrics.accepted.inc({ via: 'http' });
      metrics.commitSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
      return { index, id: entry.id };
    } catch (err) {
      if (err instanceof IntakeError) {
        metrics.rejected.inc({ reason: err.reason });
        const field = FIELD_OF[err.reason];
        return { index, error: { code: err.reason.replace(/-/g, '_'), message: err.message, fields: field ? [{ field, message: err.message }] : undefined } };
      }
      throw err;
    }
  }
}

const FIELD_OF: Record<string, string | undefined> = {
  'bad-sender': 'from',
  'bad-recipient': 'to',
  'too-many-recipients': 'to',
  'unknown-pool': 'pool',
  'unknown-vmta': 'vmta',
  oversize: 'raw',
};

function statusOf(code: string): number {
  if (code === 'spool_full' || code === 'spool_readonly' || code === 'spool_error' || code === 'draining' || code === 'mirror_unavailable') return 503;
  if (code === 'oversize') return 413;
  return 422;
}

/** One live TCP connection's peer: unique among this server's connections. */
function peerKey(socket: Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function readRequest(req: IncomingMessage, limit: number): Promise<Buffer> {
  return readBody(req, limit, () => new HttpError(413, 'too_large', `request body exceeds ${limit} bytes`));
}

const send = sendJson;
