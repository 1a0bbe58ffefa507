// The per-address AUTH failure table: a leaky bucket on an injected clock, bounded in size.
import { AuthFailures, clientKey } from '../../../../../runtime/mta/intake/smtp/auth-failures';

describe('AuthFailures', () => {
  let now = 0;
  const table = (max = 3, leakMs = 1000, maxAddresses = 100): AuthFailures => new AuthFailures({ max, leakMs, maxAddresses }, () => now);
  beforeEach(() => {
    now = 1_000_000;
  });

  test('max failures block the address; each leakMs gives back one attempt', () => {
    const t = table();
    expect(t.record('10.0.0.1')).toBe(false);
    expect(t.record('10.0.0.1')).toBe(false);
    expect(t.blocked('10.0.0.1')).toBe(false);
    expect(t.record('10.0.0.1')).toBe(true);
    expect(t.blocked('10.0.0.1')).toBe(true);
    expect(t.blocked('10.0.0.2')).toBe(false);
    now += 999;
    expect(t.blocked('10.0.0.1')).toBe(true);
    now += 1;
    expect(t.blocked('10.0.0.1')).toBe(false);
    expect(t.record('10.0.0.1')).toBe(true);
    expect(t.blocked('10.0.0.1')).toBe(true);
  });

  test('a drained address is forgotten', () => {
    const t = table();
    t.record('10.0.0.1');
    now += 1000;
    expect(t.blocked('10.0.0.1')).toBe(false);
    expect(t.size).toBe(0);
  });

  test('bounded: past maxAddresses the least recently failing address goes', () => {
    const t = table(3, 1000, 2);
    t.record('a');
    t.record('a');
    t.record('a');
    t.record('b');
    t.record('a'); // a is now the most recent
    t.record('c');
    expect(t.size).toBe(2);
    expect(t.blocked('a')).toBe(true);
    expect(t.record('b')).toBe(false); // b was forgotten: starts again at one
  });

  test('an IPv6 client counts by its /64, an IPv4-mapped one as IPv4', () => {
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(clientKey('2001:db8:1:2::beef')).toBe('2001:db8:1:2::/64');
    expect(clientKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(clientKey('::1')).toBe('0:0:0:0::/64');
    expect(clientKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(clientKey('64:ff9b:1:2:3:4:1.2.3.4')).toBe('64:ff9b:1:2::/64');
    expect(clientKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(clientKey('192.0.2.1')).toBe('192.0.2.1');
    const t = table();
    t.record('2001:db8:1:2::a');
    t.record('2001:db8:1:2::b');
    expect(t.record('2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe(true);
    expect(t.blocked('2001:db8:1:2::c')).toBe(true);
    expect(t.blocked('2001:db8:1:3::a')).toBe(false);
    t.record('::ffff:192.0.2.1');
    t.record('192.0.2.1');
    expect(t.record('::ffff:192.0.2.1')).toBe(true);
  });

  test('checks in flight hold slots: past the allowance a check waits; a success makes room, failures that fill the bucket refuse the waiters', async () => {
    const t = table(2);
    const outcome: boolean[] = [];
    const ask = (): void => void t.acquire('10.0.0.1').then((go) => outcome.push(go));
    ask();
    ask();
    ask();
    await Promise.resolve();
    expect(outcome).toEqual([true, true]);
    expect(t.checking('10.0.0.1')).toBe(2);
    t.settle('10.0.0.1', false);
    await Promise.resolve();
    expect(outcome).toEqual([true, true, true]);
    ask();
    t.settle('10.0.0.1', true);
    t.settle('10.0.0.1', true);
    await Promise.resolve();
    expect(outcome).toEqual([true, true, true, false]);
    expect(t.checking('10.0.0.1')).toBe(0);
    expect(t.blocked('10.0.0.1')).toBe(true);
    expect(() => t.settle('10.0.0.1', false)).toThrow(/without acquire/);
  });
});
