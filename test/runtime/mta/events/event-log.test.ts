import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, readdirSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { EventLog, listEventFiles } from '../../../../runtime/mta/events/event-log';
import type { DeliveryEvent, NewEvent } from '../../../../runtime/mta/events/types';
import { systemClock } from '../../../../runtime/shared/clock';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();
type AttemptEvent = DeliveryEvent;
const event = (n: number): NewEvent => ({
  time: new Date(0).toISOString(), event: 'delivery', status: 'delivered', message_id: `m${n}`, attempt: 1,
  sender: 's@x.example', recipient: `r${n}@y.example`, domain: 'y.example', time_in_queue_ms: 5, size: 100,
});

test('one JSON line per event; a full file is closed under the name it was created with, the next one started', async () => {
  const log = new EventLog({ dir, name: 'w0', maxSize: 600, maxAgeMs: 3_600_000 });
  await log.write([event(0)]);
  const first = log.currentPath!;
  for (let i = 1; i < 10; i++) await log.write([event(i)]);
  // Never renamed: a sink's cursor (file, offset) stays valid across rotation.
  expect(log.closedFiles()[0]).toBe(first);
  await log.close();
  const closed = log.closedFiles();
  expect(closed.length).toBeGreaterThanOrEqual(2);
  const lines = [...closed, log.currentPath!].flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean));
  expect(lines.map((l) => (JSON.parse(l) as AttemptEvent).message_id)).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
  expect(closed.every((f) => /\/w0\.\d{8}T\d{9}Z-\d{6}\.jsonl$/.test(f))).toBe(true);
  expect(listEventFiles(dir).get('w0')!.map((f) => f.seq)).toEqual(Array.from({ length: closed.length + 1 }, (_, i) => i + 1));
});

test('events written within the commit interval share one synced write, and none is acknowledged before its line is in the file', async () => {
  const sub = join(dir, 'interval');
  const log = new EventLog({ dir: sub, name: 'w3', maxSize: 1 << 30, maxAgeMs: 3_600_000, commitIntervalMs: 400 });
  const lines = (): number => readFileSync(log.currentPath!, 'utf8').split('\n').filter(Boolean).length;
  let settled = 0;
  const acks: Promise<number>[] = [];
  for (let i = 1; i <= 5; i++) {
    acks.push(log.write([event(i)]).then(() => (settled++, lines())));
    await new Promise((r) => setTimeout(r, 5)); // each in a turn of its own
  }
  expect(settled).toBe(0);
  expect(log.currentPath).toBeUndefined(); // opened by the first write: none yet
  expect(existsSync(sub) && readdirSync(sub)).toEqual([]);
  // Every acknowledgement finds all five lines: one write, acknowledged after it.
  expect(await Promise.all(acks)).toEqual([5, 5, 5, 5, 5]);
  await log.close();
});

test('an old file is closed by age even when small', async () => {
  const sub = join(dir, 'age');
  // A clock of the test's own: a busy machine must not let the age check close the second file too.
  let now = 1_000_000;
  const log = new EventLog({ dir: sub, name: 'w1', maxSize: 1 << 30, maxAgeMs: 50, clock: { ...systemClock, now: () => now } });
  await log.write([event(1)]);
  now += 80;
  await log.write([event(2)]);
  await log.close();
  expect(log.closedFiles()).toHaveLength(1);
});

test('a line torn by a crash is cut off at the next open, so every line of the file stays JSON', async () => {
  const sub = join(dir, 'torn');
  mkdirSync(sub);
  // What a kill in the middle of a write leaves: a complete line, then part of the next.
  const torn = join(sub, 'w2.20261205T034319123Z-000007.jsonl');
  writeFileSync(torn, `${JSON.stringify(event(1))}\n{"time":"1970-01-01T00:00:00.000Z","event":"deliv`);
  const log = new EventLog({ dir: sub, name: 'w2', maxSize: 1 << 30, maxAgeMs: 3_600_000 });
  await log.write([event(2)]);
  await log.close();
  expect(log.currentPath).toBe(torn); // goes on in its newest file
  const text = readFileSync(log.currentPath!, 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  expect(text.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as AttemptEvent).message_id)).toEqual(['m1', 'm2']);
});

// A real small filesystem (tmpfs) that fills: needs root, as CI and the dev machines run.
test('a write the full disk cuts short fails, leaves no part of a line behind, and the log goes on when space returns', async () => {
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
  try {
    const log = new EventLog({ dir: join(mnt, 'attempts'), name: 'w3', maxSize: 1 << 30, maxAgeMs: 3_600_000 });
    await log.write([event(1)]);
    // Fill the disk: the log can still grow to the end of its last page (~3.9 KB), not by a batch of ~8 KB.
    const filler = join(mnt, 'filler');
    const fd = openSync(filler, 'w');
    try {
      for (;;) writeSync(fd, Buffer.alloc(1024));
    } catch (err) {
      expect((err as { code?: string }).code).toBe('ENOSPC');
    } finally {
      closeSync(fd);
    }
    const big = Array.from({ length: 40 }, (_, i) => event(100 + i));
    await expect(log.write(big)).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(readFileSync(log.currentPath!, 'utf8').split('\n')).toEqual([expect.stringContaining('"message_id":"m1"'), '']);
    rmSync(filler);
    await log.write([event(2)]);
    await log.close();
    const ids = readFileSync(log.currentPath!, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as AttemptEvent).message_id);
    expect(ids).toEqual(['m1', 'm2']);
  } finally {
    execFileSync('umount', [mnt]);
  }
});

test('every event gets an id and the node when written; a write repeated with the same events repeats their ids', async () => {
  const sub = join(dir, 'ids');
  const log = new EventLog({ dir: sub, name: 'w4', node: 'node-a', maxSize: 1 << 30, maxAgeMs: 3_600_000 });
  const events = [event(1), event(2), { ...event(3), event_id: 'given', node: 'other' }];
  await log.write(events);
  await log.write(events); // what the recorder does when a write failed and is held
  await log.close();
  const lines = readFileSync(log.currentPath!, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AttemptEvent);
  const ids = lines.map((e) => e.event_id);
  expect(ids.slice(0, 3)).toEqual(ids.slice(3));
  expect(new Set(ids.slice(0, 2)).size).toBe(2);
  expect(ids[0]).toMatch(/^[0-9a-f-]{36}$/);
  expect(ids[2]).toBe('given');
  expect(lines.map((e) => e.node)).toEqual(['node-a', 'node-a', 'other', 'node-a', 'node-a', 'other']);
});

test('an old file is closed by age when no event follows it, so a quiet node\'s last events reach the file sinks', async () => {
  // Real I/O needs setImmediate; the clock and the age check's interval are the fake ones.
  jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
  try {
    const sub = join(dir, 'idle-age');
    const log = new EventLog({ dir: sub, name: 'w5', maxSize: 1 << 30, maxAgeMs: 5_000 });
    await log.write([event(1)]);
    const first = log.currentPath!;
    jest.advanceTimersByTime(4_000);
    await log.close().then(() => undefined); // nothing queued: still open, and close() stops the age check
    expect(log.closedFiles()).toEqual([]);

    const again = new EventLog({ dir: sub, name: 'w5', maxSize: 1 << 30, maxAgeMs: 5_000 });
    await again.write([event(2)]); // goes on in the same file, its age counted from this open
    expect(again.currentPath).toBe(first);
    jest.advanceTimersByTime(6_000);
    await again.close();
    expect(again.closedFiles()).toEqual([first]);
    expect(readFileSync(first, 'utf8').split('\n').filter(Boolean)).toHaveLength(2);
    // Only one file follows it, empty: an empty file is never closed by age.
    expect(listEventFiles(sub).get('w5')!.map((f) => f.seq)).toEqual([1, 2]);
  } finally {
    jest.useRealTimers();
  }
});

test('closeCurrent (volley drain) closes the file being written, and a previous run\'s newest file when this process wrote nothing, so the s3 sink can take it', async () => {
  const d = join(dir, 'close-current');
  const first = new EventLog({ dir: d, name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  await first.write([event(1)]);
  await first.closeCurrent();
  expect(first.closedFiles()).toHaveLength(1);
  await first.write([event(2)]);
  await first.close();
  // A restart that writes nothing: the newest file is the last run's, still open.
  const second = new EventLog({ dir: d, name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  expect(second.closedFiles()).toHaveLength(1);
  await second.closeCurrent();
  expect(second.closedFiles()).toHaveLength(2);
  // Nothing new since: a second call makes no more files.
  await second.closeCurrent();
  expect(listEventFiles(d).get('w0')).toHaveLength(3);
  await second.close();
});
