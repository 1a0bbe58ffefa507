// The PROXY v1/v2 header parser: the client address comes out in one
// canonical spelling (limits and the AUTH table key on it), and a header that
// names no usable address is an error, never a session without a client.
import { clientKey } from '../../../runtime/mta/intake/smtp/auth-failures';
import { parseProxyHeader } from '../../../runtime/shared/proxy-header';

const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** A v2 PROXY (TCP over IPv6) header from 16-byte source and destination addresses. */
function v2Tcp6(source: number[], port = 40000): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(port, 0);
  ports.writeUInt16BE(25, 2);
  return Buffer.concat([Buffer.from([...SIGNATURE, 0x21, 0x21, 0x00, 36]), Buffer.from(source), Buffer.alloc(16), ports]);
}
const mapped = (a: number, b: number, c: number, d: number): number[] => [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d];

describe('PROXY header', () => {
  test('v1 and v2 give the client address; garbage is an error', () => {
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 203.0.113.9 10.0.0.1 5555 25\r\nEHLO'))).toEqual({ done: true, info: { sourceAddress: '203.0.113.9', sourcePort: 5555 }, consumed: 41 });
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 1.2'))).toEqual({ done: false });
    const v2 = Buffer.concat([Buffer.from([...SIGNATURE, 0x21, 0x11, 0x00, 0x0c]), Buffer.from([198, 51, 100, 7, 10, 0, 0, 1, 0x30, 0x39, 0x00, 0x19])]);
    expect(parseProxyHeader(v2)).toEqual({ done: true, info: { sourceAddress: '198.51.100.7', sourcePort: 12345 }, consumed: 28 });
    expect(parseProxyHeader(Buffer.from('EHLO me\r\n'))).toEqual({ done: true, error: 'expected a PROXY protocol header' });
  });

  test('a v2 IPv4-mapped IPv6 client comes out as IPv4, so each such client has its own AUTH bucket', () => {
    const a = parseProxyHeader(v2Tcp6(mapped(10, 0, 0, 1)));
    const b = parseProxyHeader(v2Tcp6(mapped(10, 0, 0, 2)));
    expect(a).toEqual({ done: true, info: { sourceAddress: '10.0.0.1', sourcePort: 40000 }, consumed: 52 });
    expect(b).toMatchObject({ info: { sourceAddress: '10.0.0.2' } });
    const key = (p: ReturnType<typeof parseProxyHeader>): string => clientKey((p as { info: { sourceAddress: string } }).info.sourceAddress);
    expect(key(a)).not.toBe(key(b));
  });

  test('v2 and v1 IPv6 addresses are in RFC 5952 form, however the header spelled them', () => {
    const doc = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    expect(parseProxyHeader(v2Tcp6(doc))).toMatchObject({ info: { sourceAddress: '2001:db8::1' } });
    expect(parseProxyHeader(Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 5555 25\r\n'))).toMatchObject({ info: { sourceAddress: '2001:db8::1' } });
    expect(parseProxyHeader(Buffer.from('PROXY TCP6 0:0:0:0:0:ffff:192.0.2.1 ::1 5555 25\r\n'))).toMatchObject({ info: { sourceAddress: '192.0.2.1' } });
  });

  test.each([
    ['a v1 TCP4 source that is no address', 'PROXY TCP4 not-an-ip 10.0.0.1 5555 25\r\n', /"not-an-ip" is not an IPv4 address/],
    ['a v1 TCP6 source that is IPv4', 'PROXY TCP6 10.0.0.1 ::1 5555 25\r\n', /"10\.0\.0\.1" is not an IPv6 address/],
    ['a v1 port out of range', 'PROXY TCP4 10.0.0.2 10.0.0.1 70000 25\r\n', /"70000" is not a port/],
  ])('%s is an error', (_name, header, error) => {
    expect(parseProxyHeader(Buffer.from(header))).toEqual({ done: true, error: expect.stringMatching(error) });
  });

  test('a v2 PROXY header whose address block is too short is an error, not a header without a client', () => {
    const short = Buffer.concat([Buffer.from([...SIGNATURE, 0x21, 0x11, 0x00, 0x04]), Buffer.from([198, 51, 100, 7])]);
    expect(parseProxyHeader(short)).toEqual({ done: true, error: 'PROXY v2 header: IPv4 address block too short' });
    // LOCAL (and AF_UNSPEC) name no client on purpose: the proxy's own connection.
    expect(parseProxyHeader(Buffer.from([...SIGNATURE, 0x20, 0x00, 0x00, 0x00]))).toEqual({ done: true, info: {}, consumed: 16 });
    expect(parseProxyHeader(Buffer.from([...SIGNATURE, 0x21, 0x00, 0x00, 0x00]))).toEqual({ done: true, info: {}, consumed: 16 });
  });
});
