import { Throttles } from '../../../../../runtime/mta/delivery/throttle/throttles';

const config = {
  throttles: [
    { destination: 'google', maxConnections: 20, maxMessagesPerHour: 1000 },
    { vmta: 'a', destination: 'yahoo.com', maxConnections: 5 },
    { destination: '*', maxConnections: 10 },
  ],
  backoff: [{ destination: 'google', code: 421, text: 'slow down', pauseMs: 60_000 }],
  rollups: [{ name: 'google', mx: ['google.com'] }],
};

test('rollups by MX host, first matching rule, the catch-all, and a 1/N share in HAProxy mode', () => {
  const t = new Throttles(config);
  expect(t.destinationOf('example.org', ['aspmx.l.google.com.'])).toBe('google');
  expect(t.destinationOf('example.net', ['mx.example.net'])).toBe('example.net');
  expect(t.limitsFor('b', 'google', 'example.org')).toEqual({ maxConnections: 20, maxMessagesPerHour: 1000 });
  expect(t.limitsFor('a', 'yahoo.com', 'yahoo.com')).toEqual({ maxConnections: 5, maxMessagesPerHour: Infinity });
  expect(t.limitsFor('b', 'yahoo.com', 'yahoo.com')).toEqual({ maxConnections: 10, maxMessagesPerHour: Infinity });
  expect(t.limitsFor('b', 'google', 'example.org', 1 / 10)).toEqual({ maxConnections: 2, maxMessagesPerHour: 100 });
  expect(t.limitsFor('a', 'yahoo.com', 'yahoo.com', 1 / 10)).toEqual({ maxConnections: 1, maxMessagesPerHour: Infinity });
});

test('connections, an hourly window that moves on, and a backoff pause', () => {
  let now = 1_000_000;
  const t = new Throttles(config, () => now);
  const lim = { maxConnections: 2, maxMessagesPerHour: 3 };
  expect([t.tryConnection('k', lim), t.tryConnection('k', lim), t.tryConnection('k', lim)]).toEqual([true, true, false]);
  t.releaseConnection('k');
  expect(t.tryConnection('k', lim)).toBe(true);
  for (let i = 0; i < 3; i++) expect(t.tryMessage('k', lim)).toEqual({ ok: true });
  const wait = t.tryMessage('k', lim);
  expect(wait.ok).toBe(false);
  now += 61 * 60_000;
  expect(t.tryMessage('k', lim)).toEqual({ ok: true });
  expect(t.onTemporaryFailure('k', 'google', 'example.org', { code: 421, text: 'please slow down' })).toBe(60_000);
  expect(t.pausedFor('k')).toBe(60_000);
  expect(t.onTemporaryFailure('k2', 'google', 'example.org', { code: 450, text: 'mailbox busy' })).toBe(0);
});
