// The bench's run guard: deadlines from the message count, and a run failed at
// the first message its MTA did not deliver, instead of a bench that waits for good.
import { appendFileSync, mkdtempSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { AttemptWatch, guard, runDeadlineMs } from './run-guard';
import { tempDir } from '../helpers/tmp';

const root = tempDir('volley-run-guard-');
const tmpDir = (): string => mkdtempSync(join(root, 'log-'));

const line = (status: string, extra: Record<string, unknown> = {}): string => `${JSON.stringify({ time: 't', event: 'delivery', status, recipient: 'r@x.test', ...extra })}\n`;

afterEach(() => {
  jest.useRealTimers();
});

test('a run is given a minute plus its messages at 100 msg/s (or the rate it names), and a bad load is refused', () => {
  expect(runDeadlineMs(0)).toBe(60_000);
  expect(runDeadlineMs(30_000)).toBe(360_000);
  expect(runDeadlineMs(500, 4)).toBe(185_000);
  expect(() => runDeadlineMs(-1)).toThrow(expect.objectContaining({ code: 'BENCH_BAD_LOAD' }));
  expect(() => runDeadlineMs(10, 0)).toThrow(expect.objectContaining({ code: 'BENCH_BAD_LOAD' }));
});

test('the attempt watch reads only what is new, leaves a half-written line for later, and counts a rotated file once', () => {
  const dir = tmpDir();
  const current = join(dir, 'w0.current.jsonl');
  const watch = new AttemptWatch([dir, join(dir, 'missing')]);
  watch.poll();
  expect(watch.counts.delivered).toBe(0);
  appendFileSync(current, line('delivered') + line('delivered') + line('deferred', { error_kind: 'closed-before-greeting', smtp_text: 'closed-before-greeting: connection closed by the server' }).slice(0, 30));
  watch.poll();
  expect(watch.counts).toEqual({ delivered: 2, deferred: 0, failed: 0, expired: 0 });
  appendFileSync(current, line('deferred', { error_kind: 'closed-before-greeting', smtp_text: 'closed-before-greeting: connection closed by the server' }).slice(30));
  appendFileSync(current, line('deferred', { error_kind: 'closed-before-greeting', smtp_text: 'closed-before-greeting: connection closed by the server' }));
  watch.poll();
  expect(watch.counts).toEqual({ delivered: 2, deferred: 2, failed: 0, expired: 0 });
  expect(watch.undelivered()).toBe(2);
  // Rotated, and a new current file started: the old lines are not counted again.
  renameSync(current, join(dir, 'w0.2026-12-05T01-00-00.jsonl'));
  appendFileSync(current, line('failed', { smtp_code: 550, smtp_text: 'no such user' }) + line('delivered'));
  watch.poll();
  expect(watch.counts).toEqual({ delivered: 3, deferred: 2, failed: 1, expired: 0 });
  expect(watch.summary()).toBe(
    'attempt log: 3 delivered, 2 deferred, 1 failed, 0 expired (2 × deferred closed-before-greeting: closed-before-greeting: connection closed by the server; 1 × failed 550: no such user)',
  );
});

test('a run whose mail the MTA defers fails at the next look at the log, with the reason and the counts', async () => {
  jest.useFakeTimers();
  const dir = tmpDir();
  const watch = new AttemptWatch([dir]);
  let settled = false;
  const never = new Promise<void>(() => undefined);
  const run = guard('held 300 ms, warm-up', never, { deadlineMs: runDeadlineMs(30_000), messages: 30_000, watch, progress: () => 'the sink has 828 of 30000' });
  run.catch(() => undefined).finally(() => (settled = true));
  appendFileSync(join(dir, 'w0.current.jsonl'), line('delivered') + line('deferred', { error_kind: 'closed-before-greeting', smtp_text: 'connection closed by the server' }));
  await jest.advanceTimersByTimeAsync(999);
  expect(settled).toBe(false);
  await jest.advanceTimersByTimeAsync(1);
  await expect(run).rejects.toMatchObject({
    code: 'BENCH_UNDELIVERED',
    message: expect.stringMatching(/^held 300 ms, warm-up: the MTA did not deliver every message.*the sink has 828 of 30000; attempt log: 1 delivered, 1 deferred, 0 failed, 0 expired \(1 × deferred closed-before-greeting: connection closed by the server\)$/),
  });
  expect(jest.getTimerCount()).toBe(0);
});

test('a run that stops short fails at its deadline, saying how far it got', async () => {
  jest.useFakeTimers();
  const run = guard('direct, timed', new Promise<void>(() => undefined), { deadlineMs: runDeadlineMs(20_000), messages: 20_000, watch: new AttemptWatch([tmpDir()]), progress: () => 'the sink has 19990 of 20000' });
  const seen = run.catch((err: unknown) => err);
  await jest.advanceTimersByTimeAsync(runDeadlineMs(20_000));
  expect(await seen).toMatchObject({
    code: 'BENCH_DEADLINE',
    message: 'direct, timed: deadline hit: 20000 messages were given 260 s; the sink has 19990 of 20000; attempt log: 0 delivered, 0 deferred, 0 failed, 0 expired',
  });
  expect(jest.getTimerCount()).toBe(0);
});

test('a run that ends in time resolves with its value; its own failure passes through', async () => {
  jest.useFakeTimers();
  const opts = { deadlineMs: 60_000, messages: 1, progress: () => '' };
  await expect(guard('ok', Promise.resolve(42), opts)).resolves.toBe(42);
  await expect(guard('bad', Promise.reject(new Error('smtp-source exited 1')), opts)).rejects.toThrow('smtp-source exited 1');
  expect(jest.getTimerCount()).toBe(0);
});
