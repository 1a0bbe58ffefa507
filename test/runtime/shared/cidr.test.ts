import { CidrList } from '../../../runtime/shared/cidr';

test('IPv4 and IPv6 ranges, single hosts and mapped addresses', () => {
  const l = new CidrList(['10.0.0.0/8', '192.168.1.7', '127.0.0.0/30', 'fd00::/8']);
  expect(l.has('10.255.1.2')).toBe(true);
  expect(l.has('11.0.0.1')).toBe(false);
  expect(l.has('192.168.1.7')).toBe(true);
  expect(l.has('192.168.1.8')).toBe(false);
  expect(l.has('127.0.0.3')).toBe(true);
  expect(l.has('127.0.0.4')).toBe(false);
  expect(l.has('::ffff:10.1.1.1')).toBe(true);
  expect(l.has('fd12::1')).toBe(true);
  expect(l.has('fe80::1')).toBe(false);
  expect(l.has(undefined)).toBe(false);
  expect(new CidrList([]).has('10.0.0.1')).toBe(false);
});

test('bad entries are named', () => {
  expect(() => new CidrList(['10.0.0.0/33'])).toThrow('"10.0.0.0/33" has a bad prefix length');
  expect(() => new CidrList(['nope/8'])).toThrow('"nope/8" is not an IP address or CIDR');
});
