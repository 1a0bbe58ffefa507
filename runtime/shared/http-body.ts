// The two things every small JSON-over-HTTP endpoint of ours does by hand:
// read a request body up to a limit (refusing early on a Content-Length over
// it, and stopping the read, not the connection, when a chunked body passes
// it), and answer with JSON. Shared by the MTA's HTTP API and its drain endpoint.
import type { IncomingMessage, ServerResponse } from 'node:http';

/** The body, or `tooLarge()` rejected as soon as the body is known to exceed `limit`. */
export function readBody(req: IncomingMessage, limit: number, tooLarge: () => Error): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length'] ?? 0) > limit) {
      req.resume();
      return reject(tooLarge());
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(tooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Answers `body` as JSON, unless an answer has already started. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
