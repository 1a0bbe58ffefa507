import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
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

/**
 * Polls `check` (which may ask over the network: async); on timeout the error carries `state()`,
 * so a failure says what was seen instead. Each poll sleeps on node:timers, which jest's fake
 * timers leave alone, and the timeout counts polls rather than reading Date.now (faked too).
 * Under fake timers, each poll first runs the timers already due: what is due happens by itself,
 * and time moves only when the test advances it.
 */
export async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs = 5_000, state?: () => string): Promise<void> {
  for (let waited = 0; ; waited += POLL_MS) {
    runDueFakeTimers();
    if (await check()) return;
    if (waited >= timeoutMs) throw new Error(`condition not met in time${state ? `: ${state()}` : ''}`);
    await sleep(POLL_MS);
  }
}

const POLL_MS = 20;

/** Under jest's fake timers (they mark the setTimeout they install with its clock), runs those due now. */
export function runDueFakeTimers(): void {
  if (typeof jest !== 'undefined' && typeof (setTimeout as unknown as { clock?: unknown }).clock === 'object') jest.advanceTimersByTime(0);
}
