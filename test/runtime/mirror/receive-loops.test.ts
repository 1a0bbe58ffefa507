// receiveLoopsDone on jest's fake timers: it waits for every loop it was
// given, and a wait longer than warnMs is logged and reported once (why a
// promotion's promote_command has not run yet).
import { receiveLoopsDone } from '../../../runtime/mirror/receive-loops';
import { captureLogger } from '../../helpers/proxy-fixtures';

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

test('waits for all loops; a long wait is logged and reported once, a short one not at all', async () => {
  const { logger, text } = captureLogger();
  const ends: (() => void)[] = [];
  const loops = new Set([0, 1].map(() => new Promise<void>((r) => ends.push(r))));
  const slow: string[] = [];
  let done = false;
  void receiveLoopsDone(loops, logger, (w) => slow.push(w), 5000).then(() => (done = true));
  ends[1]();
  await jest.advanceTimersByTimeAsync(4999);
  expect(done).toBe(false);
  expect(slow).toEqual([]);
  await jest.advanceTimersByTimeAsync(1);
  expect(slow).toEqual([expect.stringContaining('promote_command wait')]);
  expect(text()).toContain('hung disk');
  ends[0]();
  await jest.advanceTimersByTimeAsync(0);
  expect(done).toBe(true);
  await jest.advanceTimersByTimeAsync(60_000);
  expect(slow).toHaveLength(1);
});

test('no loop running: done at once, nothing logged', async () => {
  const { logger, text } = captureLogger();
  const slow: string[] = [];
  await receiveLoopsDone(new Set(), logger, (w) => slow.push(w), 5000);
  await jest.advanceTimersByTimeAsync(60_000);
  expect(slow).toEqual([]);
  expect(text()).toBe('');
});
