// The plumbing every fake AWS endpoint shares: a loopback HTTP server, the
// request body, the SigV4 credential scope (which service and region the
// client signed for: proof that the SDK meant to reach this service), and the
// wire formats of AWS errors (query/XML and JSON protocols).
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingMessage['headers'];
  readonly body: Buffer;
  /** From the Authorization header's Credential=AKID/date/region/service/aws4_request, if signed. */
  readonly scope?: { accessKeyId: string; region: string; service: string };
}

export interface FakeResponse {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body?: string | Buffer;
}

export type Handler = (request: FakeRequest) => FakeResponse | Promise<FakeResponse>;

export interface Endpoint {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export function credentialScope(authorization: string | undefined): FakeRequest['scope'] {
  const m = /Credential=([^/]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request/.exec(authorization ?? '');
  return m ? { accessKeyId: m[1], region: m[2], service: m[3] } : undefined;
}

/** Serves `handler` on host:port (port 0: any free one); a handler that throws answers 500 with the message. */
export function serve(handler: Handler, host = '127.0.0.1', port = 0): Promise<Endpoint> {
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const request: FakeRequest = {
        method: req.method ?? 'GET',
        path: decodeURIComponent(url.pathname),
        query: url.searchParams,
        headers: req.headers,
        body: Buffer.concat(chunks),
        scope: credentialScope(req.headers.authorization),
      };
      Promise.resolve()
        .then(() => handler(request))
        .then(
          (r) => {
            res.writeHead(r.status, r.headers);
            res.end(r.body);
          },
          (err: Error) => {
            res.writeHead(500, { 'content-type': 'text/plain' });
            res.end(err.message);
          },
        );
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const actual = (server.address() as AddressInfo).port;
      resolve({
        url: `http://${host.includes(':') ? `[${host}]` : host}:${actual}`,
        port: actual,
        close: () => new Promise((done) => {
          server.closeAllConnections();
          server.close(() => done());
        }),
      });
    });
  });
}

export function xmlEscape(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** An error in the EC2 query protocol's shape. */
export function ec2Error(status: number, code: string, message: string): FakeResponse {
  return {
    status,
    headers: { 'content-type': 'text/xml' },
    body: `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error></Errors><RequestID>fake</RequestID></Response>`,
  };
}

/** An error in the awsJson1_1 protocol's shape (SSM, Secrets Manager). */
export function jsonError(status: number, type: string, message: string): FakeResponse {
  return { status, headers: { 'content-type': 'application/x-amz-json-1.1' }, body: JSON.stringify({ __type: type, message }) };
}

export function json(body: unknown): FakeResponse {
  return { status: 200, headers: { 'content-type': 'application/x-amz-json-1.1' }, body: JSON.stringify(body) };
}

/** Refuses a request not signed for `service`: a client that reached the wrong fake, or signed nothing, fails loudly. */
export function requireScope(request: FakeRequest, service: string, fail: (message: string) => FakeResponse): FakeResponse | undefined {
  if (!request.scope) return fail('request is not SigV4-signed');
  if (request.scope.service !== service) return fail(`request signed for service "${request.scope.service}", this endpoint is "${service}"`);
  return undefined;
}
