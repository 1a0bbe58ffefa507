// A webhook receiver for tests and the bench: a real Node HTTPS server on
// 127.0.0.1 with its own self-signed certificate (the CA a sink is handed as
// ca_file), that records every batch, checks every signature with the
// `standardwebhooks` reference implementation (not our signing code), and can
// be scripted to fail: answer a status (with Retry-After), hang, or reset the
// connection, for its next requests.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Webhook } from 'standardwebhooks';
import { loadTls } from '../../runtime/shared/tls-files';

/** What the receiver does with one request. */
export type ReceiverAction =
  | { status: number; retryAfter?: string; body?: string }
  /** Reads the request and never answers (until close): the sink's timeout is what ends it. */
  | 'hang'
  /** Reads the request, then resets the TCP connection (RST): a connection error on the sink's side. */
  | 'reset';

export interface ReceivedRequest {
  /** When the whole body had arrived (Date.now()). */
  receivedAt: number;
  headers: IncomingHttpHeaders;
  id: string;
  timestamp: number;
  signature: string;
  gzip: boolean;
  /** The JSON as the receiver parsed it (after content-encoding); empty with keepBodies off. */
  body: string;
  events: Record<string, unknown>[];
  /** How many events the body held, kept or not. */
  eventCount: number;
  /** Per secret, in the order given: did `Webhook.verify` accept the request with it. */
  verified: boolean[];
  /** The first verification error, if any secret failed. */
  verifyError?: string;
  /** The body was not JSON (events is then empty). */
  parseError?: string;
  action: ReceiverAction;
}

export interface WebhookReceiverOptions {
  /** Where the certificate, key and secret files go. */
  dir: string;
  /** How many secrets to make, or the `whsec_` secrets to use (default 1 new secret). */
  secrets?: number | string[];
  /** Actions for the next requests, in order; then `otherwise`. */
  script?: ReceiverAction[];
  /** What a request gets once the script is used up (default 200). */
  otherwise?: ReceiverAction;
  /** Check signatures (default true); off for the bench, where the check would be what is measured. */
  verify?: boolean;
  /** Keep each request's body and events (default true); off for the bench, which needs only ids and counts. */
  keepBodies?: boolean;
  /** Plain HTTP instead of HTTPS (default false). */
  plain?: boolean;
  /** Called for every request after it was recorded. */
  onRequest?: (r: ReceivedRequest) => void;
  /**
   * Called for every accepted (2xx) request with its parsed events, kept or
   * not: the bench reads each event's `time` against `receivedAt` (the lag)
   * without holding tens of thousands of bodies.
   */
  onAccepted?: (events: Record<string, unknown>[], receivedAt: number) => void;
}

export interface WebhookReceiver {
  url: string;
  port: number;
  /** The certificate the server presents, self-signed: the sink's ca_file. */
  caFile: string;
  /** The `whsec_` secrets, and files holding them (the sink's secret_files). */
  secrets: string[];
  secretFiles: string[];
  /** Every request, whatever it was answered. */
  requests: ReceivedRequest[];
  /** Requests answered 2xx: what the sink may consider delivered. */
  accepted(): ReceivedRequest[];
  /** Times each event_id arrived in an accepted batch. */
  acceptedCounts(): Map<string, number>;
  /** Appends actions to the script. */
  script(...actions: ReceiverAction[]): void;
  setOtherwise(action: ReceiverAction): void;
  /** TLS handshakes that failed (e.g. the client did not trust the certificate). */
  tlsErrors(): number;
  close(): Promise<void>;
}

/** A new Standard Webhooks secret: `whsec_` + 32 random bytes in base64. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

export async function startWebhookReceiver(options: WebhookReceiverOptions): Promise<WebhookReceiver> {
  const secrets = Array.isArray(options.secrets) ? options.secrets : Array.from({ length: options.secrets ?? 1 }, newWebhookSecret);
  const secretFiles = secrets.map((s, i) => {
    const file = join(options.dir, `webhook-secret-${i}`);
    writeFileSync(file, `${s}\n`, { mode: 0o600 });
    return file;
  });
  const verifiers = secrets.map((s) => new Webhook(s));
  const verify = options.verify ?? true;
  const keepBodies = options.keepBodies ?? true;
  const script = [...(options.script ?? [])];
  let otherwise: ReceiverAction = options.otherwise ?? { status: 200 };
  const requests: ReceivedRequest[] = [];
  const counts = new Map<string, number>();
  const rawSockets = new Map<string, Socket>();
  const hanging = new Set<ServerResponse>();
  let tlsErrors = 0;

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const gz = req.headers['content-encoding'] === 'gzip';
      let body: string;
      try {
        body = (gz ? gunzipSync(raw) : raw).toString('utf8');
      } catch (err) {
        // A body that does not decode is the sender's bug: recorded and refused, the script left as it was.
        body = raw.toString('latin1');
        requests.push({ receivedAt: Date.now(), headers: req.headers, id: String(req.headers['webhook-id']), timestamp: Number(req.headers['webhook-timestamp']), signature: String(req.headers['webhook-signature']), gzip: gz, body, events: [], eventCount: 0, verified: [], parseError: (err as Error).message, action: { status: 400 } });
        res.writeHead(400).end('body does not decode');
        return;
      }
      const headers = req.headers;
      const verified = verify ? verifiers.map(() => false) : [];
      let verifyError: string | undefined;
      if (verify) {
        verifiers.forEach((v, i) => {
          try {
            v.verify(body, headers as Record<string, string>);
            verified[i] = true;
          } catch (err) {
            verifyError ??= (err as Error).message;
          }
        });
      }
      let events: Record<string, unknown>[] = [];
      let parseError: string | undefined;
      try {
        events = JSON.parse(body) as Record<string, unknown>[];
      } catch (err) {
        parseError = (err as Error).message;
      }
      const action = script.length > 0 ? script.shift()! : otherwise;
      const r: ReceivedRequest = {
        receivedAt: Date.now(),
        headers,
        id: String(headers['webhook-id']),
        timestamp: Number(headers['webhook-timestamp']),
        signature: String(headers['webhook-signature']),
        gzip: gz,
        body: keepBodies ? body : '',
        events: keepBodies ? events : [],
        eventCount: events.length,
        verified,
        verifyError,
        parseError,
        action,
      };
      requests.push(r);
      if (typeof action === 'object' && action.status >= 200 && action.status < 300) {
        for (const e of events) counts.set(String(e.event_id), (counts.get(String(e.event_id)) ?? 0) + 1);
        options.onAccepted?.(events, r.receivedAt);
      }
      options.onRequest?.(r);
      if (action === 'hang') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      if (action === 'reset') {
        const sock = rawSockets.get(`${req.socket.remotePort}`);
        if (sock) sock.resetAndDestroy();
        else req.socket.destroy();
        return;
      }
      const h: Record<string, string> = { 'content-type': 'text/plain' };
      if (action.retryAfter !== undefined) h['retry-after'] = action.retryAfter;
      res.writeHead(action.status, h).end(action.body ?? (action.status < 300 ? 'ok' : 'not accepted'));
    });
  };

  let server: http.Server;
  let caFile = '';
  if (options.plain) {
    server = http.createServer(handler);
  } else {
    const { key, cert } = await loadTls(undefined, options.dir, 'localhost');
    caFile = join(options.dir, 'tls', 'self-signed.crt');
    server = https.createServer({ key, cert }, handler);
    server.on('tlsClientError', () => tlsErrors++);
  }
  // The raw TCP socket under each TLS one: only it can send an RST (a TLS socket cannot).
  server.on('connection', (s: Socket) => {
    const key = `${s.remotePort}`;
    rawSockets.set(key, s);
    s.on('close', () => rawSockets.delete(key));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;

  return {
    url: `${options.plain ? 'http' : 'https'}://127.0.0.1:${port}/events`,
    port,
    caFile,
    secrets,
    secretFiles,
    requests,
    accepted: () => requests.filter((r) => typeof r.action === 'object' && r.action.status >= 200 && r.action.status < 300),
    acceptedCounts: () => new Map(counts),
    script: (...actions) => void script.push(...actions),
    setOtherwise: (a) => void (otherwise = a),
    tlsErrors: () => tlsErrors,
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
