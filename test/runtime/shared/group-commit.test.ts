import { GroupCommit } from '../../../runtime/shared/group-commit';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('items of one turn share a write; items added during a write share the next; idle waits for both', async () => {
  const batches: number[][] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const commit = new GroupCommit<number>(async (batch) => {
    batches.push(batch);
    if (batches.length === 1) await gate; // the first write is slow
  });
  commit.add(1);
  commit.add(2);
  await new Promise((r) => setImmediate(r));
  expect(batches).toEqual([[1, 2]]);
  commit.add(3);
  commit.add(4);
  let idle = false;
  const done = commit.idle().then(() => (idle = true));
  await sleep(10);
  expect(batches).toHaveLength(1); // one write at a time
  expect(idle).toBe(false);
  release();
  await done;
  expect(batches).toEqual([[1, 2], [3, 4]]);
  await expect(commit.idle()).resolves.toBeUndefined();
});

test('with an interval, a batch collects for that long from its first item', async () => {
  const batches: { at: number; items: number[] }[] = [];
  const t0 = Date.now();
  const commit = new GroupCommit<number>(async (batch) => {
    batches.push({ at: Date.now() - t0, items: batch });
  }, { intervalMs: 400 });
  commit.add(1);
  await sleep(20);
  commit.add(2);
  await sleep(20);
  expect(batches).toEqual([]); // nothing written inside the interval
  commit.add(3);
  await commit.idle();
  expect(batches.map((b) => b.items)).toEqual([[1, 2, 3]]);
  expect(batches[0].at).toBeGreaterThanOrEqual(399);
  const t1 = Date.now() - t0;
  commit.add(4);
  await commit.idle();
  expect(batches.map((b) => b.items)).toEqual([[1, 2, 3], [4]]);
  expect(batches[1].at - t1).toBeGreaterThanOrEqual(399); // a new batch, a new interval
});

test('items that waited through a slow write have used up their interval: they go as soon as it ends', async () => {
  const starts: number[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const t0 = Date.now();
  const commit = new GroupCommit<number>(async () => {
    starts.push(Date.now() - t0);
    if (starts.length === 1) await gate;
  }, { intervalMs: 300 });
  commit.add(1); // written at ~300 ms, and the write takes until ~900 ms
  await sleep(350);
  commit.add(2); // came at ~350 ms: its 300 ms are over by the time the write ends
  await sleep(550);
  release();
  await commit.idle();
  expect(starts).toHaveLength(2);
  expect(starts[1] - starts[0]).toBeGreaterThanOrEqual(550);
  // Not another 300 ms after the slow write (that would be ~1,200 ms).
  expect(starts[1]).toBeLessThan(1100);
});
