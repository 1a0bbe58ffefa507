// A real HTTPS server on loopback for the MTA's outbound HTTPS (MTA-STS policy
// hosts, TLS-RPT https: endpoints): a test sets what each path of each Host
// answers, and reads every request it received (method, host, headers, body).

import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';

export interface PeerRequest {
  method: string;
  host: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface PeerAnswer {
  status?: number;
  contentType?: string;
  headers?: Record<string, string>;
  body?: string;
}

export class HttpsPeer {
  readonly requests: PeerRequest[] = [];
  /** "host/path" (host without port) -> answer; absent means 404. */
  readonly answers = new Map<string, PeerAnswer>();
  private readonly server: Server;
  port = 0;

  constructor(tls: { key: string; cert: string }) {
    this.server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const host = String(req.headers.host ?? '').replace(/:\d+$/, '');
        const path = req.url ?? '/';
        this.requests.push({ method: req.method ?? '', host, path, headers: req.headers, body: Buffer.concat(chunks) });
        const a = this.answers.get(`${host}${path}`);
        if (!a) {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(a.status ?? 200, { 'content-type': a.contentType ?? 'text/plain', ...a.headers }).end(a.body ?? '');
      });
    });
  }

  listen(address = '127.0.0.1', port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, address, () => {
        this.port = (this.server.address() as AddressInfo).port;
        resolve(this.port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }

  /** Requests for one host (and path, when given). */
  to(host: string, path?: string): PeerRequest[] {
    return this.requests.filter((r) => r.host === host && (path === undefined || r.path === path));
  }
}
