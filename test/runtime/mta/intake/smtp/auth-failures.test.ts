// The per-address AUTH failure table: a leaky bucket on an injected clock, bounded in size.
import { AuthFailures } from '../../../../../runtime/mta/intake/smtp/auth-failures';

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
});
