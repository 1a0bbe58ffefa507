import { createHash } from 'node:crypto';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { FrameChannel } from './channel';
import { LINK_PING_MS, keepAlive } from './heartbeat';
import { AuthError, checkSecret, clientHandshake, type Welcome } from './handshake';

export interface ProxyEndpoint {
  host: string;
  port: number;
  /** SHA-256 of the proxy's certificate (DER), hex with or without colons. */
  fingerprint?: string;
  /** Or a CA (PEM) the proxy's certificate chains to; checked against `servername`. */
  ca?: string | Buffer;
  /** Name to verify with `ca` (and SNI); defaults to host. */
  servername?: string;
  /** For logs and SessionInfo.via; defaults to host:port. */
  name?: string;
}

export function endpointName(e: ProxyEndpoint): string {
  return e.name ?? `${e.host}:${e.port}`;
}

export function normalizeFingerprint(f: string): string {
  return f.replace(/[^0-9a-f]/gi, '').toUpperCase();
}

/** SHA-256 fingerprint of a PEM or DER certificate, as `openssl x509 -fingerprint -sha256` prints it. */
export function certificateFingerprint(cert: { raw: Buffer }): string {
  return createHash('sha256').update(cert.raw).digest('hex').toUpperCase().match(/../g)!.join(':');
}

export type ProxyStage = 'connect' | 'tls' | 'auth';

/** The proxy itself (not the MX) could not be reached or authenticated. */
export class ProxyLinkError extends Error {
  constructor(
    readonly stage: ProxyStage,
    readonly proxy: string,
    message: string,
    readonly code?: string,
    /** The proxy closed the link after our proof: it does not hold the secret we proved. */
    readonly refusedOurProof = false,
  ) {
    super(message);
    this.name = 'ProxyLinkError';
  }
}

export interface DialOptions {
  secret: Buffer;
  /**
   * During a rotation, the secret being replaced: tried once, on a new
   * connection, only when the proxy refused our proof made with `secret`
   * (a proxy that has not the new secret yet). Never when the proxy's own
   * proof fails: that proxy holds neither, and gets nothing more from us.
   */
  previousSecret?: Buffer;
  connectTimeoutMs: number;
  handshakeTimeoutMs: number;
  /** This MTA's name, shown in the proxy's logs. */
  name?: string;
  /** "delivery" (default), "control" (cluster-wide throttles) or "mirror" (the HA mirror's link, runtime/mirror). */
  channel?: 'delivery' | 'control' | 'mirror';
  /** Ping interval of the link's keep-alive (default LINK_PING_MS), announced in the hello so the proxy watches at the same pace. */
  pingMs?: number;
}

/** Opens TLS to a proxy, checks its certificate, and runs the mutual handshake (with the previous secret too, see DialOptions). */
export async function dialProxy(endpoint: ProxyEndpoint, options: DialOptions): Promise<{ channel: FrameChannel; welcome: Welcome }> {
  // A short secret is a setup error (ESECRET), said before anything is sent.
  checkSecret(options.secret);
  if (options.previousSecret) checkSecret(options.previousSecret);
  try {
    return await dialOnce(endpoint, options, options.secret);
  } catch (err) {
    const previous = options.previousSecret;
    if (!previous || previous.equals(options.secret) || !(err instanceof ProxyLinkError && err.refusedOurProof)) throw err;
    return await dialOnce(endpoint, options, previous);
  }
}

async function dialOnce(endpoint: ProxyEndpoint, options: DialOptions, secret: Buffer): Promise<{ channel: FrameChannel; welcome: Welcome }> {
  const proxy = endpointName(endpoint);
  if (!endpoint.fingerprint && !endpoint.ca) throw new ProxyLinkError('tls', proxy, `proxy ${proxy}: neither a fingerprint nor a CA to check its certificate`);
  const socket = await new Promise<TLSSocket>((resolve, reject) => {
    const s = tlsConnect({
      host: endpoint.host,
      port: endpoint.port,
      servername: endpoint.servername ?? (/^[\d.]+$|:/.test(endpoint.host) ? undefined : endpoint.host),
      ca: endpoint.ca,
      rejectUnauthorized: !endpoint.fingerprint,
      minVersion: 'TLSv1.2',
    });
    s.setNoDelay(true);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new ProxyLinkError('connect', proxy, `proxy ${proxy}: no TLS connection within ${options.connectTimeoutMs} ms`, 'ETIMEDOUT'));
    }, options.connectTimeoutMs);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const stage: ProxyStage = err.code && /^E(CONNREFUSED|HOSTUNREACH|NETUNREACH|ADDRNOTAVAIL|TIMEDOUT)$/.test(err.code) ? 'connect' : 'tls';
      reject(new ProxyLinkError(stage, proxy, `proxy ${proxy}: ${stage === 'connect' ? 'cannot connect' : 'TLS failed'}: ${err.code ?? err.message}`, err.code));
    });
  });
  if (endpoint.fingerprint) {
    const got = normalizeFingerprint(certificateFingerprint(socket.getPeerCertificate()));
    if (got !== normalizeFingerprint(endpoint.fingerprint)) {
      socket.destroy();
      throw new ProxyLinkError('tls', proxy, `proxy ${proxy}: certificate fingerprint ${got} is not the pinned one`);
    }
  }
  const channel = new FrameChannel(socket);
  try {
    const pingMs = options.pingMs ?? LINK_PING_MS;
    const welcome = await clientHandshake(channel, secret, { timeoutMs: options.handshakeTimeoutMs, name: options.name, channel: options.channel, pingMs });
    // Every authenticated link is pinged from here on, idle or busy, and
    // closed when the proxy goes silent; behind a proxy of an earlier
    // release only control links are (see heartbeat.ts).
    keepAlive(channel, { intervalMs: pingMs, enforce: welcome.keepalive === true || options.channel === 'control' });
    return { channel, welcome };
  } catch (err) {
    channel.close();
    const reason = err instanceof AuthError ? err.reason : 'protocol';
    throw new ProxyLinkError('auth', proxy, `proxy ${proxy}: authentication failed (${reason}): ${(err as Error).message}`, reason, err instanceof AuthError && err.refusedOurProof);
  }
}
