// Message leases, worker side and primary side wired together in one
// process (the IPC channel replaced by direct calls), under fake timers:
// the node's hourly count stays exact while workers spend blocks locally.
import { LeaseBook, RECALL_RETRY_MS } from '../../../../../runtime/mta/delivery/throttle/lease-book';
import { LEASE_IDLE_MS, MessageLeases } from '../../../../../runtime/mta/delivery/throttle/message-leases';
import { Throttles } from '../../../../../runtime/mta/delivery/throttle/throttles';

beforeEach(() => jest.useFakeTimers({ now: 10 * 3_600_000 }));
afterEach(() => jest.useRealTimers());

/** A node: the primary's Throttles and LeaseBook, and `n` workers' MessageLeases; `asks` counts round trips. */
function node(n: number, block = 64) {
  const throttles = new Throttles({ throttles: [], backoff: [], rollups: [] }, () => Date.now());
  const workers: MessageLeases[] = [];
  const counts = { asks: 0, returns: 0, recalls: 0 };
  const book = new LeaseBook(throttles, () => n, (w, key) => {
    counts.recalls++;
    // The recall crosses IPC: it arrives on a later turn.
    queueMicrotask(() => workers[w].recall(key));
  });
  for (let i = 0; i < n; i++) {
    workers.push(
      new MessageLeases(
        {
          lease: (key, limits, want) => {
            counts.asks++;
            return Promise.resolve().then(() => book.grant(i, key, limits, want));
          },
          giveBack: (key, lease, unspent) => {
            counts.returns++;
            book.giveBack(i, key, lease, unspent);
          },
        },
        () => Date.now(),
        block,
      ),
    );
  }
  return { throttles, book, workers, counts };
}

const limits = (perHour: number) => ({ maxConnections: 2, maxMessagesPerHour: perHour });

test('one worker spends a block locally: 1,000 permits cost 16 asks, not 1,000', async () => {
  const { workers, counts } = node(2);
  for (let i = 0; i < 1000; i++) expect(await workers[0].take('k', limits(1_000_000))).toEqual({ ok: true });
  // The first grants are at most 1/(2N) of what is left, so nearly all are full blocks of 64.
  expect(counts.asks).toBe(Math.ceil(1000 / 64));
});

test('an unlimited rate never asks the primary', async () => {
  const { workers, counts } = node(2);
  for (let i = 0; i < 100; i++) expect(await workers[0].take('k', limits(Infinity))).toEqual({ ok: true });
  expect(counts.asks).toBe(0);
});

test.each([2, 4])('%i workers taking at once never get more than the hour allows, and get all of it', async (n) => {
  const { workers, throttles, book } = node(n);
  const granted: number[] = new Array<number>(n).fill(0);
  // Every worker keeps asking until it is told to wait past a recall.
  const run = async (w: number): Promise<void> => {
    for (;;) {
      const p = await workers[w].take('k', limits(100));
      if (p.ok) granted[w]++;
      else if (p.waitMs > RECALL_RETRY_MS) return;
      else await jest.advanceTimersByTimeAsync(p.waitMs);
    }
  };
  await Promise.all(workers.map((_, w) => run(w)));
  expect(granted.reduce((a, b) => a + b, 0)).toBe(100);
  expect(granted.every((g) => g > 0)).toBe(true);
  // Everything granted was spent: nothing is out on a lease, and the hour is full.
  expect(book.outstanding('k')).toBe(0);
  expect(throttles.leaseMessages('k', limits(100), 1).n).toBe(0);
});

test('a block left idle goes back, and the permits it held are the other workers\' again', async () => {
  const { workers, book, counts } = node(2);
  expect(await workers[0].take('k', limits(40))).toEqual({ ok: true });
  // A grant is at most a quarter of what is left (2 workers): 10 of 40, one spent.
  expect(workers[0].held('k')).toBe(9);
  expect(book.outstanding('k')).toBe(10);
  await jest.advanceTimersByTimeAsync(LEASE_IDLE_MS - 1);
  expect(workers[0].held('k')).toBe(9); // still in use as far as it knows
  await jest.advanceTimersByTimeAsync(1);
  expect(workers[0].held('k')).toBe(0);
  expect(counts.returns).toBe(1);
  expect(book.outstanding('k')).toBe(0);
  // 39 are left for worker 1: the one sent still counts.
  let got = 0;
  for (;;) {
    const p = await workers[1].take('k', limits(40));
    if (!p.ok) break;
    got++;
  }
  expect(got).toBe(39);
});

test('use keeps a block: the idle timer looks at the last take when it fires', async () => {
  const { workers, counts } = node(2);
  await workers[0].take('k', limits(1000));
  await jest.advanceTimersByTimeAsync(LEASE_IDLE_MS - 10);
  await workers[0].take('k', limits(1000));
  await jest.advanceTimersByTimeAsync(LEASE_IDLE_MS - 10);
  expect(counts.returns).toBe(0);
  await jest.advanceTimersByTimeAsync(10);
  expect(counts.returns).toBe(1);
});

test('a worker short of permits has the holders recalled; once they hold nothing, it waits for the hour', async () => {
  const { workers, book, counts } = node(2);
  for (let i = 0; i < 30; i++) expect(await workers[0].take('k', limits(30))).toEqual({ ok: true });
  // All 30 are spent, but worker 0's last lease is not settled yet: it is asked for what is left of it (nothing).
  expect(await workers[1].take('k', limits(30))).toEqual({ ok: false, waitMs: RECALL_RETRY_MS });
  expect(counts.recalls).toBe(1);
  await jest.advanceTimersByTimeAsync(RECALL_RETRY_MS);
  expect(book.outstanding('k')).toBe(0);
  const p = await workers[1].take('k', limits(30));
  expect(p.ok).toBe(false);
  expect((p as { waitMs: number }).waitMs).toBeGreaterThan(RECALL_RETRY_MS);
});

test('a recalled worker gives back its unspent permits, and the worker short of them gets them', async () => {
  const { workers, counts } = node(2);
  expect(await workers[0].take('k', limits(8))).toEqual({ ok: true }); // a block of 2 (a quarter of 8), one left
  expect(workers[0].held('k')).toBe(1);
  for (let i = 0; i < 6; i++) expect(await workers[1].take('k', limits(8))).toEqual({ ok: true });
  // The hour is all counted; one of it sits unspent with worker 0.
  expect(await workers[1].take('k', limits(8))).toEqual({ ok: false, waitMs: RECALL_RETRY_MS });
  expect(counts.recalls).toBe(1);
  await jest.advanceTimersByTimeAsync(RECALL_RETRY_MS);
  expect(workers[0].held('k')).toBe(0);
  expect(await workers[1].take('k', limits(8))).toEqual({ ok: true });
  // 8 sent in all: the next waits for the hour, for both.
  expect((await workers[1].take('k', limits(8))).ok).toBe(false);
  expect((await workers[0].take('k', limits(8))).ok).toBe(false);
});

test('a worker that dies: its leases stay counted, so the hour is never exceeded', async () => {
  const { workers, book, throttles } = node(2);
  await workers[0].take('k', limits(20)); // a block of 5, one spent
  book.forget(0);
  let got = 0;
  for (;;) {
    const p = await workers[1].take('k', limits(20));
    if (!p.ok) break;
    got++;
  }
  expect(got).toBe(15);
  expect(throttles.leaseMessages('k', limits(20), 1).n).toBe(0);
});

test('permits given back in a later minute come off the minute they were counted in', async () => {
  const { workers, throttles } = node(2);
  await workers[0].take('k', limits(40)); // 10 counted this minute, one spent
  await jest.advanceTimersByTimeAsync(90_000); // idle: 9 go back, to the first minute
  expect(workers[0].held('k')).toBe(0);
  // Only the one sent still counts (the minute they were taken in holds it; the current minute, nothing).
  expect(throttles.leaseMessages('k', limits(40), 1000, 1).n).toBe(39);
});

test('concurrent takes on one key share one ask', async () => {
  const { workers, counts } = node(2);
  const all = await Promise.all(Array.from({ length: 20 }, () => workers[0].take('k', limits(10_000))));
  expect(all.every((p) => p.ok)).toBe(true);
  expect(counts.asks).toBe(1);
});
