import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { VolleyError } from '../errors';
import type { FrameChannel } from './channel';
import { DEFAULT_MAX_FRAME, PROTOCOL_VERSION, ProtocolError, type Frame } from './codec';

// The mutual challenge–response described at the top of codec.ts.

export const EXPORTER_LABEL = 'EXPORTER-volley-proxy';
export const EXPORTER_CONTEXT = Buffer.from(`volley-proxy/${PROTOCOL_VERSION}`);
export const MIN_SECRET_BYTES = 32;
const NONCE_BYTES = 32;

/** Why a handshake failed, for the log line on each end. */
export type AuthFailure = 'not-allowed' | 'version' | 'bad-proof' | 'protocol' | 'timeout' | 'closed' | 'certificate';

export class AuthError extends VolleyError {
  constructor(
    readonly reason: AuthFailure,
    message: string,
    /** The proxy closed the link after our proof (it did not take it), rather than failing its own. */
    readonly refusedOurProof = false,
  ) {
    super('EPROXYAUTH', message);
    this.name = 'AuthError';
  }
}

/**
 * The shared secret: the file's bytes (trailing whitespace trimmed) or an
 * environment variable's. At least 32 bytes; the value never reaches a log.
 */
export function loadSecret(source: { file?: string; env?: string }): Buffer {
  let raw: Buffer | undefined;
  if (source.file) {
    try {
      raw = readFileSync(source.file);
    } catch (err) {
      throw new VolleyError('ESECRET', `cannot read the proxy secret file ${source.file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  } else if (source.env && process.env[source.env] !== undefined) {
    raw = Buffer.from(process.env[source.env]!, 'utf8');
  }
  if (!raw) throw new VolleyError('ESECRET', `no proxy secret: set secret_file${source.env ? ` or ${source.env}` : ''}`);
  return checkSecret(trimEnd(raw));
}

/**
 * The secret a rotation replaces, kept beside the current one so links keep
 * authenticating until both ends hold the new one: `file` when given (it
 * must then exist), else `<secretFile>.previous` when that file exists, else
 * none. Held to the same 32-byte floor as the current secret.
 */
export function loadPreviousSecret(source: { file?: string; secretFile?: string }): Buffer | undefined {
  if (source.file) return loadSecret({ file: source.file });
  if (!source.secretFile) return undefined;
  const beside = `${source.secretFile}.previous`;
  return existsSync(beside) ? loadSecret({ file: beside }) : undefined;
}

export function checkSecret(secret: Buffer): Buffer {
  if (secret.length < MIN_SECRET_BYTES) throw new VolleyError('ESECRET', `the proxy secret has ${secret.length} bytes; it needs at least ${MIN_SECRET_BYTES}`);
  return secret;
}

function trimEnd(b: Buffer): Buffer {
  let end = b.length;
  while (end > 0 && (b[end - 1] === 0x0a || b[end - 1] === 0x0d || b[end - 1] === 0x20 || b[end - 1] === 0x09)) end--;
  return b.subarray(0, end);
}

/** Keying material both ends of this TLS connection share, and nobody else. */
export function channelBinding(socket: TLSSocket): Buffer {
  return socket.exportKeyingMaterial(32, EXPORTER_LABEL, EXPORTER_CONTEXT);
}

export function proof(secret: Buffer, role: 'mta' | 'proxy', binding: Buffer, mtaNonce: Buffer, proxyNonce: Buffer): Buffer {
  return createHmac('sha256', secret).update(`volley-proxy/${PROTOCOL_VERSION} ${role}`).update(binding).update(mtaNonce).update(proxyNonce).digest();
}

function proofMatches(expected: Buffer, given: unknown): boolean {
  if (typeof given !== 'string') return false;
  const b = Buffer.from(given, 'base64');
  return b.length === expected.length && timingSafeEqual(b, expected);
}

function nonceOf(frame: Frame): Buffer | undefined {
  const n = frame.header.nonce;
  if (typeof n !== 'string') return undefined;
  const b = Buffer.from(n, 'base64');
  return b.length === NONCE_BYTES ? b : undefined;
}

async function expect(channel: FrameChannel, type: string, timeoutMs: number): Promise<Frame> {
  let f: Frame;
  try {
    f = await channel.next(timeoutMs);
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e.code === 'ETIMEDOUT') throw new AuthError('timeout', `no ${type} within ${timeoutMs} ms`);
    if (e instanceof ProtocolError && e.message !== 'connection closed by the peer') throw new AuthError('protocol', e.message);
    throw new AuthError('closed', `connection closed while waiting for ${type}`);
  }
  if (f.header.t === 'error' && type !== 'error') {
    throw new AuthError(f.header.code === 'version' ? 'version' : 'protocol', `peer refused: ${String(f.header.message ?? f.header.code)}`);
  }
  if (f.header.t !== type) throw new AuthError('protocol', `expected ${type}, got ${JSON.stringify(f.header.t).slice(0, 40)}`);
  return f;
}

export interface HelloInfo {
  version: number;
  channel: string;
  name?: string;
  /** Which of the proxy's secrets the MTA proved: 0 the current one, 1 the previous one (a rotation in progress). */
  secretIndex: number;
  /** The MTA's ping interval, when its hello announced one (earlier MTAs did not): the proxy's liveness check follows it. */
  pingMs?: number;
}

/**
 * The proxy's half. Resolves with what the MTA said in hello once the MTA has
 * proved it holds the secret and the proxy has proved it back; otherwise
 * throws AuthError (the caller logs and closes, telling the peer nothing).
 * `secrets` is the current secret, then during a rotation the previous one:
 * the MTA may prove either (the same HMAC construction for both, each >= 32
 * bytes), and the proxy proves back with the one the MTA proved, the only one
 * that MTA is sure to hold.
 */
export async function serverHandshake(channel: FrameChannel, secrets: Buffer | readonly Buffer[], options: { timeoutMs: number; name: string; sendingIps: string[]; channels?: readonly string[]; keepalive?: boolean; pipelining?: boolean }): Promise<HelloInfo> {
  const deadline = Date.now() + options.timeoutMs;
  const left = (): number => Math.max(1, deadline - Date.now());
  const hello = await expect(channel, 'hello', left());
  const mtaNonce = nonceOf(hello);
  if (!mtaNonce) throw new AuthError('protocol', 'hello without a 32-byte nonce');
  if (hello.header.version !== PROTOCOL_VERSION) {
    channel.send({ t: 'error', code: 'version', message: `protocol version ${String(hello.header.version)} is not supported`, versions: [PROTOCOL_VERSION] });
    throw new AuthError('version', `MTA speaks protocol version ${String(hello.header.version)}, this proxy ${PROTOCOL_VERSION}`);
  }
  const channelKind = typeof hello.header.channel === 'string' ? hello.header.channel : 'delivery';
  if (!(options.channels ?? ['delivery']).includes(channelKind)) {
    channel.send({ t: 'error', code: 'channel', message: `channel ${channelKind} is not supported by protocol version ${PROTOCOL_VERSION}` });
    throw new AuthError('protocol', `MTA asked for channel ${channelKind.slice(0, 40)}`);
  }
  const binding = channelBinding(channel.socket);
  const proxyNonce = randomBytes(NONCE_BYTES);
  channel.send({ t: 'challenge', version: PROTOCOL_VERSION, nonce: proxyNonce.toString('base64') });
  const auth = await expect(channel, 'auth', left());
  const keys = (Buffer.isBuffer(secrets) ? [secrets] : secrets).map(checkSecret);
  if (keys.length === 0) throw new VolleyError('ESECRET', 'no proxy secret to check the MTA\'s proof with');
  // Every candidate is checked (no early exit), so the time taken does not say which one matched.
  const matches = keys.map((k) => proofMatches(proof(k, 'mta', binding, mtaNonce, proxyNonce), auth.header.proof));
  const secretIndex = matches.indexOf(true);
  if (secretIndex < 0) {
    throw new AuthError('bad-proof', 'the MTA\'s proof does not match: wrong secret, or a handshake replayed from another connection');
  }
  const secret = keys[secretIndex];
  channel.send({ t: 'welcome', proof: proof(secret, 'proxy', binding, mtaNonce, proxyNonce).toString('base64'), name: options.name, sending_ips: options.sendingIps, ...(options.keepalive ? { keepalive: true } : {}), ...(options.pipelining ? { pipelining: true } : {}) });
  channel.maxFrame = DEFAULT_MAX_FRAME;
  const pingMs = hello.header.ping_ms;
  return {
    version: PROTOCOL_VERSION,
    channel: channelKind,
    name: typeof hello.header.name === 'string' ? hello.header.name.slice(0, 100) : undefined,
    secretIndex,
    ...(typeof pingMs === 'number' && Number.isFinite(pingMs) && pingMs > 0 ? { pingMs } : {}),
  };
}

export interface Welcome {
  name: string;
  sendingIps: string[];
  /** The proxy answers pings at once and beacons (heartbeat.ts): the MTA may take its silence for death on any link. */
  keepalive?: boolean;
  /**
   * The proxy takes a delivery link's next transaction before it has answered
   * the previous one (codec.ts, PIPELINING): without it (an earlier proxy) the
   * MTA sends one transaction at a time.
   */
  pipelining?: boolean;
}

/** The MTA's half: proves itself, then checks the proxy's proof. */
export async function clientHandshake(channel: FrameChannel, secret: Buffer, options: { timeoutMs: number; name?: string; channel?: 'delivery' | 'control' | 'mirror'; pingMs?: number }): Promise<Welcome> {
  const deadline = Date.now() + options.timeoutMs;
  const left = (): number => Math.max(1, deadline - Date.now());
  const mtaNonce = randomBytes(NONCE_BYTES);
  channel.send({ t: 'hello', version: PROTOCOL_VERSION, nonce: mtaNonce.toString('base64'), channel: options.channel ?? 'delivery', ...(options.name ? { name: options.name } : {}), ...(options.pingMs ? { ping_ms: options.pingMs } : {}) });
  const challenge = await expect(channel, 'challenge', left());
  const proxyNonce = nonceOf(challenge);
  if (!proxyNonce) throw new AuthError('protocol', 'challenge without a 32-byte nonce');
  if (challenge.header.version !== PROTOCOL_VERSION) throw new AuthError('version', `proxy answered with protocol version ${String(challenge.header.version)}`);
  if (proxyNonce.equals(mtaNonce)) throw new AuthError('bad-proof', 'the proxy echoed our nonce');
  const binding = channelBinding(channel.socket);
  channel.send({ t: 'auth', proof: proof(secret, 'mta', binding, mtaNonce, proxyNonce).toString('base64') });
  let welcome: Frame;
  try {
    welcome = await expect(channel, 'welcome', left());
  } catch (err) {
    if (err instanceof AuthError && err.reason === 'closed') {
      throw new AuthError('bad-proof', 'the proxy closed the connection after our proof: wrong secret, or this address is not allowed', true);
    }
    throw err;
  }
  if (!proofMatches(proof(secret, 'proxy', binding, mtaNonce, proxyNonce), welcome.header.proof)) {
    throw new AuthError('bad-proof', 'the proxy\'s proof does not match: it does not hold our secret');
  }
  channel.maxFrame = DEFAULT_MAX_FRAME;
  const ips = Array.isArray(welcome.header.sending_ips) ? welcome.header.sending_ips.filter((x): x is string => typeof x === 'string') : [];
  return { name: typeof welcome.header.name === 'string' ? welcome.header.name : '', sendingIps: ips, ...(welcome.header.keepalive === true ? { keepalive: true } : {}), ...(welcome.header.pipelining === true ? { pipelining: true } : {}) };
}
