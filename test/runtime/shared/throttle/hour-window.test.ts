// The hourly window's block operations, as leases use them: a block counted
// at once, and its unspent part uncounted from the minute it was taken in.
import { HourWindow } from '../../../../runtime/shared/throttle/hour-window';

test('takeUpTo counts what the limit leaves, at most the block asked for', () => {
  let now = 5 * 3_600_000;
  const w = new HourWindow(() => now);
  expect(w.takeUpTo(10, 4)).toBe(4);
  expect(w.takeUpTo(10, 8)).toBe(6);
  expect(w.takeUpTo(10, 1)).toBe(0);
  expect(w.used).toBe(10);
  // Full: the oldest minute leaves the window in an hour.
  expect(w.waitMs).toBe(3_600_000);
  now += 60_000;
  expect(w.waitMs).toBe(3_540_000);
});

test('giveBack uncounts from the minute the permits were counted in, never below zero', () => {
  let now = 5 * 3_600_000;
  const w = new HourWindow(() => now);
  const first = HourWindow.minuteOf(now);
  w.takeUpTo(100, 10);
  now += 2 * 60_000;
  w.takeUpTo(100, 5);
  w.giveBack(7, first);
  expect(w.used).toBe(8);
  // More than that minute holds: it goes to zero, and the later minute keeps its 5.
  w.giveBack(50, first);
  expect(w.used).toBe(5);
  // A minute an hour old has left the window: giving back to it changes nothing.
  now += 59 * 60_000;
  expect(w.used).toBe(5);
  w.giveBack(5, first);
  expect(w.used).toBe(5);
});
