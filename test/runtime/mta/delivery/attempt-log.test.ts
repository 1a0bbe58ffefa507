import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { AttemptLog, type AttemptEvent } from '../../../../runtime/mta/delivery/attempt-log';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();
const event = (n: number): AttemptEvent => ({
  time: new Date(0).toISOString(), event: 'delivery', status: 'delivered', message_id: `m${n}`, attempt: 1,
  sender: 's@x.example', recipient: `r${n}@y.example`, domain: 'y.example', time_in_queue_ms: 5, size: 100,
});

test('one JSON line per event; a full file is closed and renamed, the next one started', async () => {
  const log = new AttemptLog({ dir, name: 'w0', maxSize: 600, maxAgeMs: 3_600_000 });
  for (let i = 0; i < 10; i++) await log.write([event(i)]);
  await log.close();
  const closed = log.closedFiles();
  expect(closed.length).toBeGreaterThanOrEqual(2);
  const lines = [...closed, log.currentPath].flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean));
  expect(lines.map((l) => (JSON.parse(l) as AttemptEvent).message_id)).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
  expect(closed.every((f) => f.startsWith(join(dir, 'w0.')) && !f.endsWith('.current.jsonl'))).toBe(true);
});

test('events written within the commit interval share one synced write, and none is acknowledged before its line is in the file', async () => {
  const sub = join(dir, 'interval');
  const log = new AttemptLog({ dir: sub, name: 'w3', maxSize: 1 << 30, maxAgeMs: 3_600_000, commitIntervalMs: 400 });
  const lines = (): number => readFileSync(log.currentPath, 'utf8').split('\n').filter(Boolean).length;
  let settled = 0;
  const acks: Promise<number>[] = [];
  for (let i = 1; i <= 5; i++) {
    acks.push(log.write([event(i)]).then(() => (settled++, lines())));
    await new Promise((r) => setTimeout(r, 5)); // each in a turn of its own
  }
  expect(settled).toBe(0);
  expect(existsSync(log.currentPath)).toBe(false); // opened by the first write: none yet
  // Every acknowledgement finds all five lines: one write, acknowledged after it.
  expect(await Promise.all(acks)).toEqual([5, 5, 5, 5, 5]);
  await log.close();
});

test('an old file is closed by age even when small', async () => {
  const sub = join(dir, 'age');
  const log = new AttemptLog({ dir: sub, name: 'w1', maxSize: 1 << 30, maxAgeMs: 50 });
  await log.write([event(1)]);
  await new Promise((r) => setTimeout(r, 80));
  await log.write([event(2)]);
  await log.close();
  expect(log.closedFiles()).toHaveLength(1);
});

test('a line torn by a crash is cut off at the next open, so every line of the file stays JSON', async () => {
  const sub = join(dir, 'torn');
  mkdirSync(sub);
  // What a kill in the middle of a write leaves: a complete line, then part of the next.
  writeFileSync(join(sub, 'w2.current.jsonl'), `${JSON.stringify(event(1))}\n{"time":"1970-01-01T00:00:00.000Z","event":"deliv`);
  const log = new AttemptLog({ dir: sub, name: 'w2', maxSize: 1 << 30, maxAgeMs: 3_600_000 });
  await log.write([event(2)]);
  await log.close();
  const text = readFileSync(log.currentPath, 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  expect(text.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as AttemptEvent).message_id)).toEqual(['m1', 'm2']);
});

// A real small filesystem (tmpfs) that fills: needs root, as CI and the dev machines run.
test('a write the full disk cuts short fails, leaves no part of a line behind, and the log goes on when space returns', async () => {
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
  try {
    const log = new AttemptLog({ dir: join(mnt, 'attempts'), name: 'w3', maxSize: 1 << 30, maxAgeMs: 3_600_000 });
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
    expect(readFileSync(log.currentPath, 'utf8')).toBe(`${JSON.stringify(event(1))}\n`);
    rmSync(filler);
    await log.write([event(2)]);
    await log.close();
    const ids = readFileSync(log.currentPath, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as AttemptEvent).message_id);
    expect(ids).toEqual(['m1', 'm2']);
  } finally {
    execFileSync('umount', [mnt]);
  }
});
