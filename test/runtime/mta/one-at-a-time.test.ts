// oneAtATime: the primary's config refresh runs one at a time, and a refresh
// asked for during one runs once more after it (reading the file as it is then).
import { oneAtATime } from '../../../runtime/mta/one-at-a-time';

/** A job whose runs each wait for the test to finish them, in any order. */
function controlledJob() {
  const runs: { finish: (value: string) => void; fail: (err: Error) => void }[] = [];
  const job = () => new Promise<string>((resolve, reject) => runs.push({ finish: resolve, fail: reject }));
  return { runs, job };
}

test('a call while a run is in flight does not start a second one alongside it; it runs after, and its result is its own', async () => {
  const { runs, job } = controlledJob();
  const call = oneAtATime(job);
  const first = call();
  const second = call();
  await Promise.resolve();
  expect(runs).toHaveLength(1);
  runs[0]!.finish('old file');
  await expect(first).resolves.toBe('old file');
  await new Promise((resolve) => setImmediate(resolve));
  expect(runs).toHaveLength(2);
  runs[1]!.finish('new file');
  await expect(second).resolves.toBe('new file');
});

test('every call made during one run shares the one run after it', async () => {
  const { runs, job } = controlledJob();
  const call = oneAtATime(job);
  const first = call();
  const later = [call(), call(), call()];
  runs[0]!.finish('a');
  await first;
  await new Promise((resolve) => setImmediate(resolve));
  expect(runs).toHaveLength(2);
  runs[1]!.finish('b');
  await expect(Promise.all(later)).resolves.toEqual(['b', 'b', 'b']);
  expect(runs).toHaveLength(2);
});

test('a run that fails still lets the one asked for after it run; the next call after both starts at once', async () => {
  const { runs, job } = controlledJob();
  const call = oneAtATime(job);
  const first = call();
  const second = call();
  runs[0]!.fail(new Error('file unreadable'));
  await expect(first).rejects.toThrow('file unreadable');
  await new Promise((resolve) => setImmediate(resolve));
  runs[1]!.finish('fixed');
  await expect(second).resolves.toBe('fixed');
  const third = call();
  expect(runs).toHaveLength(3);
  runs[2]!.finish('again');
  await expect(third).resolves.toBe('again');
});
