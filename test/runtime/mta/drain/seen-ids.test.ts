// The drain dedupe store: ids survive a reopen, expire after the retention,
// and a torn last line (a crash mid-write) is dropped, not fatal.
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SeenIds } from '../../../../runtime/mta/drain/seen-ids';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();
const DAY = 86_400_000;
const T = 1_800_000_000_000;

test('ids are durable across a reopen, within the retention', async () => {
  const file = join(dir, 'a', 'seen.log');
  const s = await SeenIds.open(file, 7 * DAY, { now: T });
  await Promise.all([s.add(['A', 'B'], T), s.add(['C'], T + 1)]);
  expect(['A', 'B', 'C', 'D'].map((id) => s.has(id))).toEqual([true, true, true, false]);
  await s.close();
  const again = await SeenIds.open(file, 7 * DAY, { now: T + DAY });
  expect(['A', 'B', 'C', 'D'].map((id) => again.has(id))).toEqual([true, true, true, false]);
  await again.close();
});

test('ids older than the retention are forgotten, and the file shrinks to what is kept', async () => {
  const file = join(dir, 'b', 'seen.log');
  const s = await SeenIds.open(file, 7 * DAY, { now: T });
  await s.add(['OLD'], T);
  await s.add(['NEW'], T + 5 * DAY);
  await s.close();
  const later = await SeenIds.open(file, 7 * DAY, { now: T + 8 * DAY });
  expect([later.has('OLD'), later.has('NEW')]).toEqual([false, true]);
  await later.close();
  expect(readFileSync(file, 'latin1')).toBe(`NEW ${T + 5 * DAY}\n`);
});

test('a torn last line is dropped; appends go on after what is kept', async () => {
  const file = join(dir, 'c', 'seen.log');
  const s = await SeenIds.open(file, 7 * DAY, { now: T });
  await s.add(['KEPT'], T);
  await s.close();
  appendFileSync(file, 'TORN-WITHOUT-ITS-TI'); // cut off mid-line
  const again = await SeenIds.open(file, 7 * DAY, { now: T });
  expect(again.has('KEPT')).toBe(true);
  expect(again.size).toBe(1);
  await again.add(['NEXT'], T);
  await again.close();
  expect(readFileSync(file, 'latin1')).toBe(`KEPT ${T}\nNEXT ${T}\n`);
});

test('an id drained away again is forgotten, durably: a later drain back here is queued, not dropped as a duplicate', async () => {
  const file = join(dir, 'd', 'seen.log');
  const s = await SeenIds.open(file, 7 * DAY, { now: T });
  await s.add(['MOVED', 'STAYS'], T);
  await s.forget(['MOVED', 'NEVER-SEEN']);
  expect([s.has('MOVED'), s.has('STAYS')]).toEqual([false, true]);
  await s.close();
  const again = await SeenIds.open(file, 7 * DAY, { now: T });
  expect([again.has('MOVED'), again.has('STAYS')]).toEqual([false, true]);
  await again.close();
  expect(readFileSync(file, 'latin1')).toBe(`STAYS ${T}\n`);
});
