// The secondary's outdated watch (policy degrade), with fake timers: marked
// once it has heard nothing from the primary for longer than sync_timeout,
// never while word keeps coming, never when the rule does not apply.
import { OutdatedWatch } from '../../../runtime/mirror/outdated-watch';

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

function watch(applies: () => boolean, contact: { at?: number }) {
  const marks: number[] = [];
  const w = new OutdatedWatch({ timeoutMs: 1000, applies, lastContact: () => contact.at, mark: (ms) => marks.push(ms), now: () => Date.now() });
  w.start();
  return { w, marks };
}

test('silent for longer than sync_timeout: marked; pings before that keep it in sync', () => {
  const contact: { at?: number } = { at: Date.now() };
  let outdated = false;
  const { w, marks } = watch(() => !outdated, contact);
  for (let i = 0; i < 10; i++) {
    jest.advanceTimersByTime(500);
    contact.at = Date.now(); // a ping every 500 ms
  }
  expect(marks).toEqual([]);
  jest.advanceTimersByTime(1000);
  expect(marks).toEqual([]); // exactly sync_timeout: not yet more
  jest.advanceTimersByTime(250);
  expect(marks).toEqual([1250]);
  outdated = true;
  jest.advanceTimersByTime(5000);
  expect(marks).toHaveLength(1);
  w.stop();
  expect(jest.getTimerCount()).toBe(0);
});

test('a secondary started while cut off counts from its start; a node the rule does not cover is never marked', () => {
  const { w, marks } = watch(() => true, {});
  jest.advanceTimersByTime(1250);
  expect(marks).toEqual([1250]);
  w.stop();
  const other = watch(() => false, {});
  jest.advanceTimersByTime(10_000);
  expect(other.marks).toEqual([]);
  other.w.stop();
});
