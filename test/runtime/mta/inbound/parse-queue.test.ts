// ParseQueue: at most `limit` tasks run at once, the rest start in arrival
// order as slots free, and a failing task still frees its slot; so does one
// past its deadline, and a waiting task whose signal aborts leaves the queue.

import { ParseQueue } from '../../../../runtime/mta/inbound/parse-queue';
import { ManualTimers } from '../../../helpers/manual-timers';

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

test('a task that never settles is given up at its deadline: it rejects parse-timeout, the next starts, and its late result goes nowhere', async () => {
  const log: string[] = [];
  const timers = new ManualTimers();
  const q = new ParseQueue(1, () => undefined, timers);
  const [a, b] = ['a', 'b'].map((n) => held(log, n));
  const ra = q.run(a.task, { deadlineMs: 30_000 });
  const rb = q.run(b.task, { deadlineMs: 30_000 });
  await turn();
  expect(log).toEqual(['start a']);
  expect(timers.pending()).toEqual([30_000]);
  timers.fire();
  await expect(ra).rejects.toMatchObject({ code: 'parse-timeout' });
  await turn();
  expect(log).toEqual(['start a', 'start b']);
  // a settles late: it neither changes ra nor frees a second slot.
  a.release();
  const c = held(log, 'c');
  const rc = q.run(c.task);
  await turn();
  expect(log).toEqual(['start a', 'start b']);
  expect(q.waiting).toBe(1);
  b.release();
  await expect(rb).resolves.toBe('b');
  expect(timers.pending()).toEqual([]);
  await turn();
  expect(log.at(-1)).toBe('start c');
  c.release();
  await rc;
});

test('a waiting task whose signal aborts leaves the queue at once and never runs; a running one is not stopped', async () => {
  const log: string[] = [];
  const deltas: number[] = [];
  const q = new ParseQueue(1, (d) => deltas.push(d));
  const [a, b, c] = ['a', 'b', 'c'].map((n) => held(log, n));
  const runningSignal = new AbortController();
  const ra = q.run(a.task, { signal: runningSignal.signal });
  const gone = new AbortController();
  const rb = q.run(b.task, { signal: gone.signal });
  const rc = q.run(c.task);
  await turn();
  expect(q.waiting).toBe(2);
  gone.abort();
  runningSignal.abort();
  await expect(rb).rejects.toMatchObject({ code: 'parse-dropped' });
  expect(q.waiting).toBe(1);
  expect(deltas).toEqual([1, 1, -1]);
  a.release();
  await expect(ra).resolves.toBe('a');
  await turn();
  expect(log).toEqual(['start a', 'start c']);
  c.release();
  await rc;
  expect(deltas).toEqual([1, 1, -1, -1]);
  // Aborted before it even asked: it never runs.
  const late = new AbortController();
  late.abort();
  await expect(q.run(held(log, 'd').task, { signal: late.signal })).rejects.toMatchObject({ code: 'parse-dropped' });
  expect(log).toEqual(['start a', 'start c']);
});

test('a task past its deadline is told to stop: its signal aborts with the parse-timeout error, so its work and memory end with it', async () => {
  const timers = new ManualTimers();
  const q = new ParseQueue(1, () => undefined, timers);
  const signals: AbortSignal[] = [];
  const hung = q.run(
    (signal) => {
      signals.push(signal);
      return new Promise<never>(() => undefined);
    },
    { deadlineMs: 30_000 },
  );
  await turn();
  expect(signals).toHaveLength(1);
  expect(signals[0].aborted).toBe(false);
  timers.fire();
  await expect(hung).rejects.toMatchObject({ code: 'parse-timeout' });
  expect(signals[0].aborted).toBe(true);
  expect(signals[0].reason).toMatchObject({ code: 'parse-timeout' });
  // One that finishes in time is never told to stop.
  const ok = await q.run(async (signal) => {
    signals.push(signal);
    return 'ok';
  }, { deadlineMs: 30_000 });
  expect(ok).toBe('ok');
  expect(signals[1].aborted).toBe(false);
});
