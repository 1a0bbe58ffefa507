// ParseQueue: at most `limit` tasks run at once, the rest start in arrival
// order as slots free, and a failing task still frees its slot.

import { ParseQueue } from '../../../../runtime/mta/inbound/parse-queue';

/** A task that runs until released, recording when it starts. */
function held(log: string[], name: string): { task: () => Promise<string>; release: (fail?: boolean) => void } {
  let release!: (fail?: boolean) => void;
  const done = new Promise<boolean>((r) => (release = (fail) => r(fail === true)));
  return {
    task: async () => {
      log.push(`start ${name}`);
      if (await done) throw new Error(`${name} failed`);
      return name;
    },
    release,
  };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('one at a time, in arrival order; a failure frees the slot; the waiting count is reported', async () => {
  const log: string[] = [];
  const deltas: number[] = [];
  const q = new ParseQueue(1, (d) => deltas.push(d));
  const [a, b, c] = ['a', 'b', 'c'].map((n) => held(log, n));
  const ra = q.run(a.task);
  const rb = q.run(b.task);
  const rc = q.run(c.task);
  await turn();
  expect(log).toEqual(['start a']);
  expect(q.waiting).toBe(2);
  a.release(true);
  await expect(ra).rejects.toThrow('a failed');
  await turn();
  expect(log).toEqual(['start a', 'start b']);
  b.release();
  await expect(rb).resolves.toBe('b');
  await turn();
  expect(log).toEqual(['start a', 'start b', 'start c']);
  c.release();
  await expect(rc).resolves.toBe('c');
  expect(q.waiting).toBe(0);
  expect(deltas).toEqual([1, 1, -1, -1]);
  // The slot is free again: the next task starts at once.
  const d = held(log, 'd');
  const rd = q.run(d.task);
  await turn();
  expect(log.at(-1)).toBe('start d');
  d.release();
  await rd;
});

test('a limit of two runs two at once', async () => {
  const log: string[] = [];
  const q = new ParseQueue(2);
  const tasks = ['a', 'b', 'c'].map((n) => held(log, n));
  const runs = tasks.map((t) => q.run(t.task));
  await turn();
  expect(log).toEqual(['start a', 'start b']);
  tasks[1].release();
  await runs[1];
  await turn();
  expect(log).toEqual(['start a', 'start b', 'start c']);
  tasks[0].release();
  tasks[2].release();
  await Promise.all(runs);
});
