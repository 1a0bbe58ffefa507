import { GroupCommit } from '../../../runtime/shared/group-commit';

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
  await new Promise((r) => setTimeout(r, 10));
  expect(batches).toHaveLength(1); // one write at a time
  expect(idle).toBe(false);
  release();
  await done;
  expect(batches).toEqual([[1, 2], [3, 4]]);
  await expect(commit.idle()).resolves.toBeUndefined();
});

test('with an interval, a batch collects for that long after its first item, and the next one too', async () => {
  const batches: { at: number; items: number[] }[] = [];
  const t0 = Date.now();
  const commit = new GroupCommit<number>(async (batch) => {
    batches.push({ at: Date.now() - t0, items: batch });
  }, { intervalMs: 40 });
  commit.add(1);
  await new Promise((r) => setTimeout(r, 10));
  commit.add(2);
  await new Promise((r) => setTimeout(r, 10));
  expect(batches).toEqual([]); // nothing written inside the interval
  commit.add(3);
  await commit.idle();
  expect(batches.map((b) => b.items)).toEqual([[1, 2, 3]]);
  expect(batches[0].at).toBeGreaterThanOrEqual(39);
  commit.add(4);
  await commit.idle();
  expect(batches.map((b) => b.items)).toEqual([[1, 2, 3], [4]]);
});
