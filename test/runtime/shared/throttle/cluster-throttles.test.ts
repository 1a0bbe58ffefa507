import { ClusterThrottles, nodeOf, workerScoped } from '../../../../runtime/shared/throttle/cluster-throttles';

const key = '203.0.113.10|gmail';
const one = { maxConnections: 1, maxMessagesPerHour: null };

test('average merges the MTAs\' limits to their mean, sum to their total', () => {
  const avg = new ClusterThrottles('average');
  const sum = new ClusterThrottles('sum');
  for (const [mta, n] of [['a', 2], ['b', 4], ['c', 6]] as const) {
    avg.register(mta, key, { maxConnections: n, maxMessagesPerHour: n * 10 });
    sum.register(mta, key, { maxConnections: n, maxMessagesPerHour: n * 10 });
  }
  expect(avg.limitsFor(key)).toEqual({ maxConnections: 4, maxMessagesPerHour: 40 });
  expect(sum.limitsFor(key)).toEqual({ maxConnections: 12, maxMessagesPerHour: 120 });
  avg.register('d', key, { maxConnections: 1, maxMessagesPerHour: null });
  expect(avg.limitsFor(key)).toEqual({ maxConnections: 3, maxMessagesPerHour: null });
  expect(avg.limitsFor('other|x')).toBeUndefined();
});

test('a limit of 1 connection holds across 3 MTAs; a release lets the next one in', () => {
  const t = new ClusterThrottles('average');
  expect(t.tryConnection('a', key, one)).toBe(true);
  expect(t.tryConnection('b', key, one)).toBe(false);
  expect(t.tryConnection('c', key, one)).toBe(false);
  expect(t.tryConnection('a', key, one)).toBe(false);
  t.releaseConnection('a', key);
  expect(t.tryConnection('c', key, one)).toBe(true);
  expect(t.connections(key)).toBe(1);
  expect(t.connections(key, 'c')).toBe(1);
  // A release for a permit the MTA does not hold changes nothing.
  t.releaseConnection('b', key);
  expect(t.connections(key)).toBe(1);
});

test('with sum, 1+1+1 gives three connections at once', () => {
  const t = new ClusterThrottles('sum');
  for (const m of ['a', 'b', 'c']) t.register(m, key, one);
  expect(['a', 'b', 'c'].map((m) => t.tryConnection(m, key, one))).toEqual([true, true, true]);
  expect(t.tryConnection('a', key, one)).toBe(false);
});

test('the whole limit is available to the one MTA that asks', () => {
  const t = new ClusterThrottles('average');
  const five = { maxConnections: 5, maxMessagesPerHour: 3 };
  t.register('b', key, five);
  t.register('c', key, five);
  expect([1, 2, 3, 4, 5, 6].map(() => t.tryConnection('a', key, five))).toEqual([true, true, true, true, true, false]);
  expect([1, 2, 3, 4].map(() => t.tryMessage('a', key, five).ok)).toEqual([true, true, true, false]);
});

test('the hourly count is shared and slides', () => {
  let now = 1_000_000_000_000;
  const t = new ClusterThrottles('average', () => now);
  const l = { maxConnections: 10, maxMessagesPerHour: 5 };
  const results = ['a', 'b', 'c', 'a', 'b', 'c'].map((m) => t.tryMessage(m, key, l));
  expect(results.map((r) => r.ok)).toEqual([true, true, true, true, true, false]);
  const denied = results[5] as { ok: false; waitMs: number };
  expect(denied.waitMs).toBeGreaterThan(0);
  expect(denied.waitMs).toBeLessThanOrEqual(3_600_000);
  expect(t.messages(key)).toBe(5);
  now += 3_600_000 + 60_000;
  expect(t.tryMessage('c', key, l).ok).toBe(true);
  expect(t.messages(key)).toBe(1);
});

test('forgetting an MTA frees its permits and drops its limits', () => {
  const t = new ClusterThrottles('sum');
  expect(t.tryConnection('a', key, { maxConnections: 2, maxMessagesPerHour: null })).toBe(true);
  expect(t.tryConnection('a', key, { maxConnections: 2, maxMessagesPerHour: null })).toBe(true);
  expect(t.tryConnection('b', key, one)).toBe(true);
  expect(t.limitsFor(key)?.maxConnections).toBe(3);
  expect(t.tryConnection('c', key, one)).toBe(true);
  expect(t.tryConnection('c', key, one)).toBe(false);
  t.forget('a');
  expect(t.connections(key)).toBe(2);
  expect(t.connections(key, 'a')).toBe(0);
  expect(t.limitsFor(key)?.maxConnections).toBe(2);
  t.releaseConnection('b', key);
  expect(t.tryConnection('c', key, one)).toBe(true);
  t.forget('b');
  t.forget('c');
  expect(t.mtas).toBe(0);
  expect(t.limitsFor(key)).toBeUndefined();
  // A late release from a forgotten MTA is harmless.
  t.releaseConnection('a', key);
  expect(t.connections(key)).toBe(0);
});

test('a reclaimed permit is granted even over the limit', () => {
  const t = new ClusterThrottles('average');
  expect(t.tryConnection('a', key, one)).toBe(true);
  expect(t.tryConnection('b', key, one, true)).toBe(true);
  expect(t.connections(key)).toBe(2);
  t.releaseConnection('a', key);
  expect(t.tryConnection('c', key, one)).toBe(false);
  t.releaseConnection('b', key);
  expect(t.tryConnection('c', key, one)).toBe(true);
});

test('the workers of one MTA node are one MTA to the merge: with sum, a node of 4 workers adds its share once', () => {
  const t = new ClusterThrottles('sum');
  const five = { maxConnections: 5, maxMessagesPerHour: 50 };
  // As the proxy names control connections: `<name the MTA sent>#<n>`, an MTA worker sending `<node>/w<i>`.
  for (const [i, mta] of ['mta-1/w0#1', 'mta-1/w1#2', 'mta-1/w2#3', 'mta-1/w3#4', 'mta-2/w0#5'].entries()) t.register(mta, key, i === 4 ? { maxConnections: 3, maxMessagesPerHour: 30 } : five);
  expect(t.limitsFor(key)).toEqual({ maxConnections: 8, maxMessagesPerHour: 80 });
  const avg = new ClusterThrottles('average');
  for (const mta of ['mta-1/w0#1', 'mta-1/w1#2', 'mta-1/w2#3', 'mta-2/w0#4']) avg.register(mta, key, mta.startsWith('mta-1') ? { maxConnections: 2, maxMessagesPerHour: null } : { maxConnections: 4, maxMessagesPerHour: null });
  expect(avg.limitsFor(key)?.maxConnections).toBe(3); // the mean of two nodes, not of four connections
  // Names that are not a worker's stay one MTA per connection.
  expect([nodeOf('mta#1'), nodeOf('mta#2'), nodeOf('a'), nodeOf('x/w1#7'), nodeOf('x/w#7')]).toEqual(['mta#1', 'mta#2', 'a', 'x', 'x/w#7']);
  // Scoped by a worker of a proxy run with --workers: still the MTA's node.
  expect([nodeOf(workerScoped('x/w1#7', 'w0.123')), nodeOf(workerScoped('mta#1', 'w1.124'))]).toEqual(['x', 'mta#1@w1.124']);
  // A node's last worker gone: its share goes with it.
  for (const mta of ['mta-1/w0#1', 'mta-1/w1#2', 'mta-1/w2#3']) t.forget(mta);
  expect(t.limitsFor(key)).toEqual({ maxConnections: 8, maxMessagesPerHour: 80 });
  t.forget('mta-1/w3#4');
  expect(t.limitsFor(key)).toEqual({ maxConnections: 3, maxMessagesPerHour: 30 });
});

test('the hourly count outlives the control connections: the only MTA on a key reconnecting does not start a new hour', () => {
  let now = 1_000_000_000_000;
  const t = new ClusterThrottles('average', () => now);
  const l = { maxConnections: 10, maxMessagesPerHour: 3 };
  expect([1, 2, 3, 4].map(() => t.tryMessage('mta-1/w0#1', key, l).ok)).toEqual([true, true, true, false]);
  // The control link breaks (a missed beacon, the MTA restarted) and comes back as a new connection.
  t.forget('mta-1/w0#1');
  expect(t.tryMessage('mta-1/w0#2', key, l).ok).toBe(false);
  expect(t.messages(key)).toBe(3);
  // Gone from the window, the key is forgotten with the last MTA on it.
  t.forget('mta-1/w0#2');
  now += 3_600_000 + 60_000;
  t.forget('nobody');
  expect(t.tracked).toBe(0);
  expect(t.tryMessage('mta-1/w0#3', key, l).ok).toBe(true);
});

test('forgetting an MTA looks only at the keys it leaves without one, not at every key the proxy tracks', () => {
  const t = new ClusterThrottles('average');
  // Every key a stable MTA holds, and one key of a short-lived link.
  for (let i = 0; i < 5_000; i++) t.register('stable/w0#1', `k${i}`, one);
  t.register('brief/w0#2', 'brief-key', one);
  // Counts the entries of the key map that anything walks through (forget must not: a node restart forgets one link per worker).
  let walked = 0;
  const keys = (t as unknown as { keys: { [Symbol.iterator]: () => Iterator<unknown> } }).keys;
  const entries = keys[Symbol.iterator].bind(keys);
  keys[Symbol.iterator] = function* (): Generator<unknown> {
    for (let it = entries(), e = it.next(); !e.done; e = it.next()) {
      walked++;
      yield e.value;
    }
  };
  t.forget('brief/w0#2');
  expect(t.tracked).toBe(5_000); // brief-key, unused in the hour, is gone
  expect(walked).toBe(0);
});
