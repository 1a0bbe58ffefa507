import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Logger } from '../../runtime/shared/log';
import { ProxyServer, type ProxyServerOptions } from '../../runtime/proxy/server';
import { loadTls } from '../../runtime/shared/tls-files';

export interface ProxyTls {
  key: Buffer;
  cert: Buffer;
  keyPath: string;
  certPath: string;
  /** SHA-256 fingerprint, colon-separated hex. */
  fingerprint: string;
}

/** A self-signed pair for proxy.test under `dir`, and its fingerprint. */
export async function proxyTls(dir: string): Promise<ProxyTls> {
  const { key, cert } = await loadTls(undefined, dir, 'proxy.test');
  const keyPath = join(dir, 'proxy.key');
  const certPath = join(dir, 'proxy.crt');
  writeFileSync(keyPath, key, { mode: 0o600 });
  writeFileSync(certPath, cert);
  return { key, cert, keyPath, certPath, fingerprint: new X509Certificate(cert).fingerprint256 };
}

export function newSecret(): Buffer {
  return Buffer.from(randomBytes(32).toString('hex'));
}

/** A pino logger whose lines a test can read back. */
export function captureLogger(): { logger: Logger; lines: () => Record<string, unknown>[]; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  const logger = pino({ level: 'debug' }, stream);
  return {
    logger,
    text: () => text,
    lines: () =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

export async function startProxy(options: Omit<ProxyServerOptions, 'listen' | 'idleTimeoutMs' | 'maxTransactionsPerSession'> & Partial<ProxyServerOptions>): Promise<{ server: ProxyServer; port: number }> {
  const server = new ProxyServer({ listen: { address: '127.0.0.1', port: 0 }, idleTimeoutMs: 5_000, maxTransactionsPerSession: 100, ...options });
  const { port } = await server.start();
  return { server, port };
}

/** Polls `check` (which may ask over the network: async); on timeout the error carries `state()`, so a failure says what was seen instead. */
export async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs = 5_000, state?: () => string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`condition not met in time${state ? `: ${state()}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
