// One HTTPS request with the limits MTA-STS and TLS-RPT need: the certificate
// verified against the system CAs (plus an optional extra CA file), the host's
// address from the MTA's resolver, a time limit on the whole exchange, a size
// limit on the answer, and redirects refused (RFC 8461 3.3: a policy is never
// fetched from anywhere but its own host).

import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import type { LookupFunction } from 'node:net';
import { rootCertificates } from 'node:tls';
import { VolleyError } from '../../../shared/errors';
import type { DnsTxt } from './dns-txt';

export interface HttpsOptions {
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: Buffer;
  /** PEM file of CAs trusted in addition to the system's. */
  caFile?: string;
  timeoutMs: number;
  /** Largest answer body read; a longer one fails the request. */
  maxBytes: number;
  /** Resolves the URL's host; the system resolver when absent. */
  dns?: DnsTxt;
}

export interface HttpsAnswer {
  status: number;
  contentType: string;
  body: Buffer;
}

const caCache = new Map<string, string[]>();

/** System CAs plus the file's: `ca` replaces Node's default list, so both are given. */
function trusted(caFile: string | undefined): string[] | undefined {
  if (!caFile) return undefined;
  let list = caCache.get(caFile);
  if (!list) {
    list = [...rootCertificates, readFileSync(caFile, 'utf8')];
    caCache.set(caFile, list);
  }
  return list;
}

function lookupVia(dns: DnsTxt): LookupFunction {
  return (hostname, options, callback) => {
    dns.address(hostname).then(
      ({ address, family }) => {
        // With autoSelectFamily, net asks for every address at once.
        if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address, family }]);
        else callback(null, address, family);
      },
      (err: Error) => callback(Object.assign(err, { code: 'ENOTFOUND' }) as NodeJS.ErrnoException, '', 0),
    );
  };
}

/** Throws VolleyError EHTTPS for anything but a complete answer within the limits (any status is an answer). */
export function httpsRequest(url: string, options: HttpsOptions): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return reject(new VolleyError('EHTTPS', `bad URL ${url}`));
    }
    if (u.protocol !== 'https:') return reject(new VolleyError('EHTTPS', `not an https: URL: ${url}`));
    let done = false;
    const fail = (message: string, cause?: unknown): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      reject(new VolleyError('EHTTPS', `${options.method} ${url}: ${message}`, { cause }));
    };
    const req = request(
      url,
      {
        method: options.method,
        headers: { ...options.headers, ...(options.body ? { 'content-length': String(options.body.length) } : {}) },
        ca: trusted(options.caFile),
        lookup: options.dns ? lookupVia(options.dns) : undefined,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > options.maxBytes) fail(`answer larger than ${options.maxBytes} bytes`);
          else chunks.push(chunk);
        });
        res.on('error', (err) => fail(err.message, err));
        res.on('end', () => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks) });
        });
      },
    );
    const timer = setTimeout(() => fail(`no complete answer in ${options.timeoutMs} ms`), options.timeoutMs);
    req.on('error', (err) => fail(err.message, err));
    req.end(options.body);
  });
}
