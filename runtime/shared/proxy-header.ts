// PROXY protocol v1 (text) and v2 (binary), as sent by HAProxy, our `lb` and
// AWS NLBs: the parser, and a reader that takes the header off a socket before
// a server (the HTTP API) sees its bytes. Only read from peers listed in
// smtp.trusted_proxies.
import { isIPv4, isIPv6, SocketAddress, type Socket } from 'node:net';
import { VolleyError } from './errors';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

export interface ProxyInfo {
  sourceAddress?: string;
  sourcePort?: number;
}

export type ProxyParse = { done: false } | { done: true; info: ProxyInfo; consumed: number } | { done: true; error: string };

/** Tries to read a PROXY header from the start of `buf`; `done: false` means wait for more bytes. */
export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (buf.length >= 12 && buf.subarray(0, 12).equals(V2_SIGNATURE)) return parseV2(buf);
  if (buf.length < 12 && V2_SIGNATURE.subarray(0, buf.length).equals(buf)) return { done: false };
  const nl = buf.indexOf('\r\n');
  if (nl === -1) return buf.length > 107 ? { done: true, error: 'PROXY v1 header too long' } : { done: false };
  const parts = buf.toString('latin1', 0, nl).split(' ');
  if (parts[0] !== 'PROXY') return { done: true, error: 'expected a PROXY protocol header' };
  if (parts[1] === 'UNKNOWN') return { done: true, info: {}, consumed: nl + 2 };
  if ((parts[1] !== 'TCP4' && parts[1] !== 'TCP6') || parts.length !== 6) return { done: true, error: 'malformed PROXY v1 header' };
  const sourceAddress = parts[1] === 'TCP4' ? (isIPv4(parts[2]) ? parts[2] : undefined) : canonicalIPv6(parts[2]);
  if (!sourceAddress) return { done: true, error: `PROXY v1 header: ${JSON.stringify(parts[2].slice(0, 45))} is not an ${parts[1] === 'TCP4' ? 'IPv4' : 'IPv6'} address` };
  const sourcePort = /^\d{1,5}$/.test(parts[4]) ? Number(parts[4]) : NaN;
  if (!(sourcePort <= 65535)) return { done: true, error: `PROXY v1 header: ${JSON.stringify(parts[4].slice(0, 10))} is not a port` };
  return { done: true, info: { sourceAddress, sourcePort }, consumed: nl + 2 };
}

/**
 * One spelling per address, because limits and the AUTH table key on the
 * string: RFC 5952 form (lower case, longest zero run compressed), and an
 * IPv4-mapped address as plain IPv4 (a v2 header from an NLB's dual-stack
 * listener carries IPv4 clients that way). Undefined when not IPv6.
 */
function canonicalIPv6(text: string): string | undefined {
  if (!isIPv6(text)) return undefined;
  let address: string;
  try {
    // inet_pton/inet_ntop underneath; a zone id (fe80::1%eth0) is dropped.
    address = new SocketAddress({ address: text, family: 'ipv6' }).address;
  } catch {
    // The parser runs on a socket's data event: whatever this rejects is an answer, never a throw.
    return undefined;
  }
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(address);
  return mapped ? mapped[1] : address;
}

function parseV2(buf: Buffer): ProxyParse {
  if (buf.length < 16) return { done: false };
  const verCmd = buf[12];
  const fam = buf[13];
  const len = buf.readUInt16BE(14);
  if (buf.length < 16 + len) return { done: false };
  if (verCmd >> 4 !== 2) return { done: true, error: 'unsupported PROXY version' };
  const consumed = 16 + len;
  if ((verCmd & 0x0f) === 0) return { done: true, info: {}, consumed }; // LOCAL: health check from the proxy itself
  if (fam >> 4 === 1) {
    if (len < 12) return { done: true, error: 'PROXY v2 header: IPv4 address block too short' };
    const a = buf.subarray(16, 20);
    return { done: true, info: { sourceAddress: `${a[0]}.${a[1]}.${a[2]}.${a[3]}`, sourcePort: buf.readUInt16BE(24) }, consumed };
  }
  if (fam >> 4 === 2) {
    if (len < 36) return { done: true, error: 'PROXY v2 header: IPv6 address block too short' };
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(16 + i * 2).toString(16));
    return { done: true, info: { sourceAddress: canonicalIPv6(groups.join(':')), sourcePort: buf.readUInt16BE(48) }, consumed };
  }
  // AF_UNSPEC or AF_UNIX: the spec says use the connection's own endpoints,
  // i.e. the proxy's, as for LOCAL.
  return { done: true, info: {}, consumed };
}

/**
 * Reads a PROXY header off the start of `socket`, puts back whatever followed
 * it, and resolves with what it named ({} for LOCAL / UNKNOWN: the proxy's own
 * connection, a health check). Rejects with a VolleyError (EPROXYHEADER) on a
 * malformed header, a close before one, or none within `timeoutMs`; the
 * caller decides how to answer and closes the socket.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyInfo> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => done(new VolleyError('EPROXYHEADER', `no PROXY header within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const p = parseProxyHeader(buf);
      if (!p.done) return;
      if ('error' in p) return done(new VolleyError('EPROXYHEADER', p.error));
      done(undefined, p.info);
      // After the listener is gone and the stream paused, so the next reader gets these bytes first.
      if (p.consumed < buf.length) socket.unshift(buf.subarray(p.consumed));
    };
    const onEnd = (): void => done(new VolleyError('EPROXYHEADER', 'the connection closed before a PROXY header'));
    function done(err: VolleyError | undefined, info?: ProxyInfo): void {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onEnd);
      socket.removeListener('error', onEnd);
      socket.pause();
      if (err) reject(err);
      else resolve(info!);
    }
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onEnd);
  });
}
