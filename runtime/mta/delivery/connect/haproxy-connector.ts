import { isIPv4, isIPv6, connect as netConnect, type Socket } from 'node:net';
import type { HaproxyFrontend } from '../../../shared/config/types';
import { RFC5321_CLIENT_TIMEOUTS, SmtpClientSession, connectFailure, type ClientTimeouts, type OpenOptions } from '../../../shared/smtp/client';
import { ConnectError, type Connector, type OutboundSession, type Source, type Target, type TlsRequirement } from '../../../shared/smtp/connector';

// HAProxy mode: the sending IPs live on HAProxy servers. For each one the MTA
// connects to that IP's frontend (bound with `accept-proxy`), writes a PROXY
// protocol header whose destination is the MX, and HAProxy's `server 0.0.0.0
// source <sending ip>` opens the MX connection from the sending IP. Then the
// SMTP session runs through it unchanged.
//
// What the MTA can and cannot see: a frontend that is down is 'refused' (or
// 'timeout'/'unreachable'); HAProxy accepts the connection before it tries the
// MX, so an MX that refuses, never answers, or closes before its greeting all
// look the same from here: the frontend closes without a greeting,
// 'closed-before-greeting'.

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

export interface ProxyEndpoints {
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
}

/** Both addresses in one family: an IPv4 address next to an IPv6 one becomes IPv4-mapped. */
function sameFamily(e: ProxyEndpoints): { v6: boolean; src: string; dst: string } {
  const v6 = isIPv6(e.srcIp) || isIPv6(e.dstIp);
  const map = (ip: string): string => (v6 && isIPv4(ip) ? `::ffff:${ip}` : ip);
  for (const ip of [e.srcIp, e.dstIp]) if (!isIPv4(ip) && !isIPv6(ip)) throw new Error(`"${ip}" is not an IP address`);
  return { v6, src: map(e.srcIp), dst: map(e.dstIp) };
}

/** PROXY protocol v1: `PROXY TCP4 src dst sport dport\r\n`. */
export function proxyHeaderV1(e: ProxyEndpoints): Buffer {
  const f = sameFamily(e);
  return Buffer.from(`PROXY ${f.v6 ? 'TCP6' : 'TCP4'} ${f.src} ${f.dst} ${e.srcPort} ${e.dstPort}\r\n`, 'latin1');
}

/** PROXY protocol v2 (binary), command PROXY, TCP over IPv4 or IPv6. */
export function proxyHeaderV2(e: ProxyEndpoints): Buffer {
  const f = sameFamily(e);
  const addrLen = f.v6 ? 36 : 12;
  const b = Buffer.alloc(16 + addrLen);
  V2_SIGNATURE.copy(b, 0);
  b[12] = 0x21; // version 2, PROXY
  b[13] = f.v6 ? 0x21 : 0x11; // AF_INET6 / AF_INET, STREAM
  b.writeUInt16BE(addrLen, 14);
  const ipLen = f.v6 ? 16 : 4;
  ipBytes(f.src, f.v6).copy(b, 16);
  ipBytes(f.dst, f.v6).copy(b, 16 + ipLen);
  b.writeUInt16BE(e.srcPort, 16 + 2 * ipLen);
  b.writeUInt16BE(e.dstPort, 18 + 2 * ipLen);
  return b;
}

function ipBytes(ip: string, v6: boolean): Buffer {
  if (!v6) return Buffer.from(ip.split('.').map(Number));
  // The URL parser normalises IPv6 (an embedded dotted quad becomes two hex groups).
  const norm = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const [head, tail] = norm.includes('::') ? norm.split('::') : [norm, undefined];
  const hex = (s: string | undefined): number[] => (s ? s.split(':').map((x) => parseInt(x, 16)) : []);
  const h = hex(head);
  const t = hex(tail);
  const groups = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** Opens SMTP sessions through the HAProxy frontend that holds the VMTA's sending IP. */
export class HaproxyConnector implements Connector {
  private readonly bySendingIp = new Map<string, HaproxyFrontend>();

  constructor(
    frontends: HaproxyFrontend[],
    private readonly timeouts: ClientTimeouts = RFC5321_CLIENT_TIMEOUTS,
    /** The trust store of `verify` sessions (delivery.tls_ca_file, mx-trust.ts); node's store when absent. */
    private readonly trust?: OpenOptions['secureContext'],
  ) {
    for (const f of frontends) this.bySendingIp.set(f.sendingIp, f);
  }

  /** The frontend holding this sending IP, if any (for routing decisions). */
  frontendFor(sendingIp: string | undefined): HaproxyFrontend | undefined {
    return sendingIp === undefined ? undefined : this.bySendingIp.get(sendingIp);
  }

  async open(target: Target, source: Source, tls: TlsRequirement): Promise<OutboundSession> {
    const frontend = this.frontendFor(source.ip);
    if (!frontend || !source.ip) throw new ConnectError('ip-not-hosted', `no HAProxy frontend holds sending IP ${source.ip ?? '(none)'}`);
    const started = Date.now();
    const endpoints = { srcIp: source.ip, dstIp: target.ip, dstPort: target.port };
    // Each connection carries its own PROXY header; the clear-text retry of `may` needs a second one.
    const dial = async (): Promise<Socket> => {
      const socket = await this.connect(frontend);
      let header: Buffer;
      try {
        const e = { ...endpoints, srcPort: socket.localPort ?? 0 };
        header = frontend.proxyProtocol === 'v2' ? proxyHeaderV2(e) : proxyHeaderV1(e);
      } catch (err) {
        socket.destroy();
        throw new ConnectError('error', `cannot build a PROXY header: ${(err as Error).message}`);
      }
      socket.write(header);
      return socket;
    };
    return SmtpClientSession.openOn(await dial(), target, source, tls, this.timeouts, {
      via: `haproxy:${frontend.host}:${frontend.port}`,
      localIp: source.ip,
      startedAt: started,
      reconnect: dial,
      secureContext: this.trust,
    });
  }

  private connect(f: HaproxyFrontend): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host: f.host, port: f.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ConnectError('timeout', `connect to HAProxy frontend ${f.host}:${f.port} timed out`));
      }, this.timeouts.connectMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(socket);
      });
      socket.once('error', (err: Error & { code?: string }) => {
        clearTimeout(timer);
        reject(new ConnectError(connectFailure(err.code), `${err.code ?? 'error'} connecting to HAProxy frontend ${f.host}:${f.port}`));
      });
    });
  }
}
