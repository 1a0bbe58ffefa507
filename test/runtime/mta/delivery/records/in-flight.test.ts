// The in-flight set: a stop waits for the last message in it, and not for one
// that was never there.
import { InFlight } from '../../../../../runtime/mta/delivery/records/in-flight';

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

test('empty() resolves at once with nothing in flight, and only when the last one leaves otherwise', async () => {
  const f = new InFlight();
  let done = false;
  await f.empty();
  f.add('a');
  f.add('b');
  void f.empty().then(() => (done = true));
  f.delete('a');
  await flush();
  expect(done).toBe(false);
  expect(f.has('b')).toBe(true);
  f.delete('b');
  await flush();
  expect(done).toBe(true);
  expect(f.size).toBe(0);
});

test('deleteAll (a purge releasing its queued jobs) wakes the waiters when it empties the set, not when ids were not in it', async () => {
  const f = new InFlight();
  f.add('x');
  let woken = 0;
  void f.empty().then(() => woken++);
  f.deleteAll(['nope']);
  await flush();
  expect(woken).toBe(0);
  f.deleteAll(['x', 'nope']);
  await flush();
  expect(woken).toBe(1);
});
