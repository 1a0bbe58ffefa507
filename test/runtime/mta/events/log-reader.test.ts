import { appendFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EventLog, eventFileName } from '../../../../runtime/mta/events/event-log';
import { endCursor, LogReader } from '../../../../runtime/mta/events/log-reader';
import type { NewEvent } from '../../../../runtime/mta/events/types';
import { tempDir } from '../../../helpers/tmp';

const root = tempDir();
const event = (n: number): NewEvent => ({
  time: new Date(n * 1000).toISOString(), event: 'delivery', status: 'delivered', message_id: `m${n}`, attempt: 1,
  sender: 's@x.example', recipient: `r${n}@y.example`, domain: 'y.example', time_in_queue_ms: 5, size: 100,
});
const ids = (lines: string[]): string[] => lines.map((l) => (JSON.parse(l) as { message_id: string }).message_id);

test('reads every producer across rotation, complete lines only, and goes on from where it stood', async () => {
  const dir = join(root, 'rotation');
  const w0 = new EventLog({ dir, name: 'w0', maxSize: 700, maxAgeMs: 3_600_000, fsync: false });
  const w1 = new EventLog({ dir, name: 'w1', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  for (let i = 0; i < 8; i++) await w0.write([event(i)]);
  await w1.write([event(100)]);
  expect(readdirSync(dir).filter((f) => f.startsWith('w0.')).length).toBeGreaterThan(2);
  const reader = new LogReader(dir, {});
  const first = await reader.read(5);
  expect(first.more).toBe(true);
  expect(first.lines).toHaveLength(5);
  const second = await reader.read(100);
  expect(second.more).toBe(false);
  expect(ids([...first.lines, ...second.lines]).sort()).toEqual([...Array.from({ length: 8 }, (_, i) => `m${i}`), 'm100'].sort());
  // A line being written (no newline yet) is not returned, and not lost.
  const open = w1.currentPath!;
  const line = JSON.stringify({ ...event(101), event_id: 'e101' });
  appendFileSync(open, line.slice(0, 20));
  expect((await reader.read(100)).lines).toEqual([]);
  appendFileSync(open, `${line.slice(20)}\n`);
  expect(ids((await reader.read(100)).lines)).toEqual(['m101']);
  // From a saved position: only what came after.
  const at = reader.position();
  await w0.write([event(9)]);
  const again = new LogReader(dir, at);
  expect(ids((await again.read(100)).lines)).toEqual(['m9']);
  await Promise.all([reader.close(), again.close(), w0.close(), w1.close()]);
});

test('a partial tail cut by the producer restart is never read as part of the new line', async () => {
  const dir = join(root, 'torn');
  mkdirSync(dir);
  const file = join(dir, eventFileName('w0', 0, 1));
  // The torn tail is not a prefix of the next line: glued to what replaces it, it would not parse.
  writeFileSync(file, `${JSON.stringify(event(1))}\n{"message_id":"torn","recipient":"x@y.example","st`);
  const reader = new LogReader(dir, {});
  expect(ids((await reader.read(100)).lines)).toEqual(['m1']);
  // The producer restarts: it cuts the torn tail and appends.
  const w0 = new EventLog({ dir, name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  await w0.write([event(2)]);
  expect(ids((await reader.read(100)).lines)).toEqual(['m2']);
  await Promise.all([reader.close(), w0.close()]);
});

test('a new sink starts at the end of the log; a bounded reader stops at its end position', async () => {
  const dir = join(root, 'ends');
  const w0 = new EventLog({ dir, name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  await w0.write([event(1), event(2)]);
  const end = endCursor(dir);
  await w0.write([event(3)]);
  const fresh = new LogReader(dir, end);
  expect(ids((await fresh.read(100)).lines)).toEqual(['m3']);
  const bounded = new LogReader(dir, {}, end);
  expect(ids((await bounded.read(100)).lines)).toEqual(['m1', 'm2']);
  expect((await bounded.read(100)).lines).toEqual([]);
  await Promise.all([fresh.close(), bounded.close(), w0.close()]);
});

test('a sink that starts while a producer\'s file ends in a line torn by a crash gets the first event the producer writes after its restart', async () => {
  const dir = join(root, 'torn-end');
  mkdirSync(dir);
  const file = join(dir, eventFileName('w0', 0, 1));
  // The node crashed mid-write; the primary builds a new sink's cursor before the worker restarts and cuts the tail.
  writeFileSync(file, `${JSON.stringify(event(1))}\n{"message_id":"torn","recipient":"x@y.example","st`);
  const end = endCursor(dir);
  const w0 = new EventLog({ dir, name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  await w0.write([event(2), event(3)]);
  const fresh = new LogReader(dir, end);
  expect(ids((await fresh.read(100)).lines)).toEqual(['m2', 'm3']);
  await Promise.all([fresh.close(), w0.close()]);
});

test('a file one producer cannot read does not cost the lines already read from another in the same call', async () => {
  const dir = join(root, 'one-fails');
  const w0 = new EventLog({ dir, name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  await w0.write([event(1), event(2)]);
  // w1's file cannot be read (here a directory in its place: EISDIR; in life EMFILE, EIO).
  mkdirSync(join(dir, eventFileName('w1', 0, 1)));
  const reader = new LogReader(dir, {});
  const got: string[] = [];
  for (let i = 0; i < 2; i++) got.push(...(await reader.read(100).then((r) => r.lines, () => [])));
  expect(ids(got)).toEqual(['m1', 'm2']);
  await Promise.all([reader.close(), w0.close()]);
});
