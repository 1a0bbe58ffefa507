import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readdirSync, statSync, truncateSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { DiskReserve } from '../../../../runtime/mta/spool/disk-reserve';
import { SpoolPartition } from '../../../../runtime/mta/spool/partition';
import type { Envelope } from '../../../../runtime/mta/spool/types';
import { RecordType } from '../../../../runtime/shared/spool-record';
import { tempDir } from '../../../helpers/tmp';
import { waitUntil } from '../../../helpers/proxy-fixtures';

const root = tempDir();
let n = 0;
const env = (id: string, to = ['a@example.test']): Envelope => ({ id, from: 's@example.test', to, received: 1000 + n++, via: 'smtp', size: 5 });
const segFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();

describe('SpoolPartition', () => {
  test('an appended message survives reopening, with its body intact', async () => {
    const dir = join(root, 'reopen');
    const p = await SpoolPartition.open({ dir });
    await p.appendMessage(env('m1'), Buffer.from('hello'));
    await p.appendMessage(env('m2', ['x@a.test', 'y@b.test']), Buffer.from('world'));
    await p.close();
    const q = await SpoolPartition.open({ dir });
    expect(q.size).toBe(2);
    const { envelope, body } = await q.read(q.get('m2')!);
    expect(body.toString()).toBe('world');
    expect(envelope.to).toEqual(['x@a.test', 'y@b.test']);
    await q.close();
  });

  test('concurrent appends share fsyncs (group commit)', async () => {
    const p = await SpoolPartition.open({ dir: join(root, 'group') });
    await Promise.all(Array.from({ length: 200 }, (_, i) => p.appendMessage(env(`g${i}`), Buffer.alloc(2048, 120))));
    const stats = p.stats();
    expect(stats.records).toBe(200);
    expect(stats.commits).toBeLessThan(200);
    await p.close();
  });

  test('state changes and done records are replayed at start-up', async () => {
    const dir = join(root, 'state');
    const p = await SpoolPartition.open({ dir });
    await p.appendMessage(env('s1', ['a@x.test', 'b@y.test']), Buffer.from('1'));
    await p.appendMessage(env('s2'), Buffer.from('2'));
    await p.updateState({ id: 's1', next: 99_999, attempts: 2, finished: ['a@x.test'] });
    await p.markDone({ id: 's2', reason: 'delivered' });
    await p.close();
    const q = await SpoolPartition.open({ dir });
    expect(q.get('s2')).toBeUndefined();
    expect(q.get('s1')).toMatchObject({ next: 99_999, attempts: 2, to: ['b@y.test'] });
    await q.close();
  });

  test('a torn tail is cut off and appends continue after the last good record', async () => {
    const dir = join(root, 'torn');
    const p = await SpoolPartition.open({ dir });
    await p.appendMessage(env('t1'), Buffer.from('one'));
    await p.appendMessage(env('t2'), Buffer.from('two'));
    await p.close();
    const file = join(dir, segFiles(dir)[0]);
    const full = statSync(file).size;
    truncateSync(file, full - 3); // a crash in the middle of t2's write
    const warnings: unknown[] = [];
    const logger = { warn: (o: unknown) => warnings.push(o), info: () => undefined, error: () => undefined } as never;
    const q = await SpoolPartition.open({ dir, logger });
    expect(q.get('t1')).toBeDefined();
    expect(q.get('t2')).toBeUndefined();
    expect(warnings).toHaveLength(1);
    await q.appendMessage(env('t3'), Buffer.from('three'));
    await q.close();
    const r = await SpoolPartition.open({ dir });
    expect([...r.entries()].map((e) => e.id).sort()).toEqual(['t1', 't3']);
    expect((await r.read(r.get('t3')!)).body.toString()).toBe('three');
    await r.close();
  });

  test('a corrupt record in the middle is skipped and the records after it are kept', async () => {
    const dir = join(root, 'corrupt');
    const p = await SpoolPartition.open({ dir });
    await p.appendMessage(env('c1'), Buffer.from('first'));
    const e2 = await p.appendMessage(env('c2'), Buffer.from('second'));
    await p.appendMessage(env('c3'), Buffer.from('third'));
    await p.close();
    const fd = openSync(join(dir, segFiles(dir)[0]), 'r+');
    writeSync(fd, Buffer.from('XXXX'), 0, 4, e2.offset + e2.length - 6); // flip bytes in c2's body
    closeSync(fd);
    const q = await SpoolPartition.open({ dir });
    expect([...q.entries()].map((e) => e.id).sort()).toEqual(['c1', 'c3']);
    await q.close();
  });

  test('garbage appended after the last record does not stop start-up', async () => {
    const dir = join(root, 'garbage');
    const p = await SpoolPartition.open({ dir });
    await p.appendMessage(env('z1'), Buffer.from('z'));
    await p.close();
    appendFileSync(join(dir, segFiles(dir)[0]), Buffer.from('\x00\x01garbage-not-a-record'));
    const q = await SpoolPartition.open({ dir });
    expect(q.size).toBe(1);
    await q.close();
  });

  test('segments roll at the size limit and are deleted once nothing in them is queued', async () => {
    const dir = join(root, 'roll');
    const p = await SpoolPartition.open({ dir, segmentSize: 8 * 1024 });
    for (let i = 0; i < 20; i++) await p.appendMessage(env(`r${i}`), Buffer.alloc(1500, 65));
    expect(segFiles(dir).length).toBeGreaterThan(3);
    for (let i = 0; i < 20; i++) await p.markDone({ id: `r${i}`, reason: 'delivered' });
    expect(segFiles(dir).length).toBe(1);
    await p.close();
    const q = await SpoolPartition.open({ dir, segmentSize: 8 * 1024 });
    expect(q.size).toBe(0);
    await q.close();
  });

  test('reads after a restart keep at most 8 segment handles open, and a deleted segment closes its handle', async () => {
    const dir = join(root, 'readers');
    const p = await SpoolPartition.open({ dir, segmentSize: 8 * 1024 });
    for (let i = 0; i < 60; i++) await p.appendMessage(env(`h${i}`), Buffer.alloc(1500, 97 + (i % 20)));
    await p.close();
    const q = await SpoolPartition.open({ dir, segmentSize: 8 * 1024, recentBytes: 0 });
    const readers = (q as unknown as { readers: { open: number } }).readers;
    expect(segFiles(dir).length).toBeGreaterThan(10);
    // Read everything twice, concurrently: every body is the one written, from a bounded set of handles.
    for (let round = 0; round < 2; round++) {
      const bodies = await Promise.all(Array.from({ length: 60 }, (_, i) => q.read(q.get(`h${i}`)!).then((m) => m.body)));
      bodies.forEach((b, i) => expect(b.equals(Buffer.alloc(1500, 97 + (i % 20)))).toBe(true));
      expect(readers.open).toBeLessThanOrEqual(8);
    }
    for (let i = 0; i < 60; i++) await q.markDone({ id: `h${i}`, reason: 'delivered' });
    expect(segFiles(dir).length).toBe(1);
    expect(readers.open).toBeLessThanOrEqual(1); // none for a deleted segment (8 were open before)
    await q.close();
  });

  test('the change stream yields every record in order and follows new commits', async () => {
    const p = await SpoolPartition.open({ dir: join(root, 'stream'), segmentSize: 4096 });
    for (let i = 0; i < 5; i++) await p.appendMessage(env(`st${i}`), Buffer.alloc(1500, 66));
    const seen: { type: RecordType; segment: number; offset: number }[] = [];
    const iterate = (async () => {
      for await (const { position, record } of p.stream(undefined, true)) {
        seen.push({ type: record.type, ...position });
        if (seen.length === 7) break;
      }
    })();
    await p.markDone({ id: 'st0', reason: 'delivered' });
    await p.appendMessage(env('st5'), Buffer.from('late'));
    await iterate;
    expect(seen.map((s) => s.type)).toEqual([1, 1, 1, 1, 1, 3, 1]);
    const sorted = [...seen].sort((a, b) => a.segment - b.segment || a.offset - b.offset);
    expect(seen).toEqual(sorted);
    await p.close();
  });
});

describe('start-up scan of sealed segments', () => {
  test('records of sealed segments are read on their framing; a bad length is caught by the full check', async () => {
    const dir = join(root, 'sealed');
    const p = await SpoolPartition.open({ dir, segmentSize: 4096 });
    for (let i = 0; i < 12; i++) await p.appendMessage(env(`s${i}`), Buffer.alloc(1500, 67));
    await p.close();
    const files = segFiles(dir);
    expect(files.length).toBeGreaterThan(2);
    // Corrupt the length field of the first record of the first (sealed) segment.
    const fd = openSync(join(dir, files[0]), 'r+');
    writeSync(fd, Buffer.from([0xff, 0x00, 0x00, 0x00]), 0, 4, 8);
    closeSync(fd);
    const q = await SpoolPartition.open({ dir });
    const ids = [...q.entries()].map((e) => e.id);
    expect(ids).not.toContain('s0');
    expect(ids).toHaveLength(11);
    await q.close();
  });

  test('a corrupt body in a sealed segment is refused when read for delivery', async () => {
    const dir = join(root, 'sealed-body');
    const p = await SpoolPartition.open({ dir, segmentSize: 4096 });
    const first = await p.appendMessage(env('b0'), Buffer.alloc(1500, 68));
    for (let i = 1; i < 6; i++) await p.appendMessage(env(`b${i}`), Buffer.alloc(1500, 68));
    await p.close();
    const fd = openSync(join(dir, segFiles(dir)[0]), 'r+');
    writeSync(fd, Buffer.from('ZZZZ'), 0, 4, first.offset + first.length - 10);
    closeSync(fd);
    const q = await SpoolPartition.open({ dir, recentBytes: 0 });
    await expect(q.read(q.get('b0')!)).rejects.toMatchObject({ code: 'ECORRUPT' });
    await q.close();
  });
});

describe('reclaiming the active segment', () => {
  test('an active segment that holds nothing live is replaced by a new one and deleted', async () => {
    const dir = join(root, 'active-reclaim');
    // 64 KB segments: a dead active segment goes once it holds 4 KB.
    const p = await SpoolPartition.open({ dir, segmentSize: 64 * 1024 });
    for (let i = 0; i < 5; i++) await p.appendMessage(env(`a${i}`), Buffer.alloc(1500, 70));
    const [first] = segFiles(dir);
    for (let i = 0; i < 4; i++) await p.markDone({ id: `a${i}`, reason: 'delivered' });
    expect(segFiles(dir)).toEqual([first]); // a4 still lives in it
    await p.markDone({ id: 'a4', reason: 'delivered' });
    await waitUntil(() => !segFiles(dir).includes(first), 5_000, () => segFiles(dir).join(' '));
    expect(segFiles(dir)).toHaveLength(1);
    expect(statSync(join(dir, segFiles(dir)[0])).size).toBe(0);
    // Appends go on in the new segment, and a restart finds exactly what is queued.
    await p.appendMessage(env('a5'), Buffer.from('after'));
    await p.close();
    const q = await SpoolPartition.open({ dir, segmentSize: 64 * 1024 });
    expect([...q.entries()].map((e) => e.id)).toEqual(['a5']);
    expect((await q.read(q.get('a5')!)).body.toString()).toBe('after');
    await q.close();
  });

  test('a quiet queue keeps a small dead active segment (no roll per message)', async () => {
    const dir = join(root, 'active-small');
    const p = await SpoolPartition.open({ dir, segmentSize: 64 * 1024 });
    await p.appendMessage(env('q1'), Buffer.from('x'));
    await p.markDone({ id: 'q1', reason: 'delivered' });
    await p.close();
    expect(segFiles(dir)).toEqual(['000000000001.seg']);
  });
});

// A real small filesystem (tmpfs) that fills to the last block: needs root, as CI and the dev machines run.
describe('the reserve on a full disk', () => {
  const mnt = join(root, 'full-mnt');
  beforeAll(() => {
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
  });
  afterAll(() => execFileSync('umount', [mnt]));

  test('messages are refused, state and done records are written from the reserve, and a small dead active segment goes at once', async () => {
    const reserve = await DiskReserve.open({ file: join(mnt, 'reserve'), bytes: 256 * 1024, minFree: { bytes: 64 * 1024 }, checkIntervalMs: 3_600_000 });
    const dir = join(mnt, 'p000');
    const p = await SpoolPartition.open({ dir, segmentSize: 64 * 1024 * 1024, reserve });
    try {
      await reserve.ready;
      expect(reserve.reserved).toBe(256 * 1024);
      // Their done records (~14 KB) are more than the slack in the segment's last page.
      await Promise.all(Array.from({ length: 200 }, (_, i) => p.appendMessage(env(`f${i}`, ['a@x.test', 'b@y.test']), Buffer.alloc(200, 71))));
      // Something else takes every free block of the volume.
      const fd = openSync(join(mnt, 'filler'), 'w');
      try {
        for (;;) writeSync(fd, Buffer.alloc(4096, 1));
      } catch (err) {
        expect((err as { code?: string }).code).toBe('ENOSPC');
      } finally {
        closeSync(fd);
      }
      // The first write that meets the full disk fails, and makes the free space be read at once (not at the next tick).
      expect(reserve.intakeOpen).toBe(true);
      await expect(p.appendMessage(env('too-big'), Buffer.alloc(16 * 1024, 72))).rejects.toMatchObject({ code: 'ENOSPC' });
      await waitUntil(() => !reserve.intakeOpen);
      expect(reserve.reserved).toBe(256 * 1024); // messages never take the reserve
      await expect(p.appendMessage(env('refused'), Buffer.alloc(200, 72))).rejects.toMatchObject({ code: 'ENOSPC' });
      expect(p.lastWriteError).toMatchObject({ code: 'ENOSPC' });
      await p.updateState({ id: 'f0', next: 5_000, attempts: 1, finished: ['a@x.test'] });
      await Promise.all(Array.from({ length: 199 }, (_, i) => p.markDone({ id: `f${i + 1}`, reason: 'delivered' })));
      expect(reserve.reserved).toBeLessThan(256 * 1024);
      expect(p.get('f0')).toMatchObject({ to: ['b@y.test'], attempts: 1 });
      // Below min_free the last live message's done record frees its (small) segment at once.
      const [seg] = segFiles(dir);
      await p.markDone({ id: 'f0', reason: 'delivered' });
      await waitUntil(() => !segFiles(dir).includes(seg), 5_000, () => segFiles(dir).join(' '));
    } finally {
      await p.close();
      await reserve.close();
    }
    const q = await SpoolPartition.open({ dir });
    expect(q.size).toBe(0);
    await q.close();
  });
});

describe('syncAfterWrite (under a sync HA mirror)', () => {
  /** A sync the test releases by hand: what the partition awaits after a write. */
  function heldSyncs(): { sync: (fh: import('node:fs/promises').FileHandle) => Promise<void>; pending: { fh: import('node:fs/promises').FileHandle; release: (err?: Error) => void }[] } {
    const pending: { fh: import('node:fs/promises').FileHandle; release: (err?: Error) => void }[] = [];
    return {
      pending,
      sync: (fh) => new Promise<void>((resolve, reject) => pending.push({ fh, release: (err) => (err ? reject(err) : resolve()) })),
    };
  }

  test('written is called once the record is in the file, before the sync; the append resolves only after the sync', async () => {
    const dir = join(root, 'after-write');
    const held = heldSyncs();
    const p = await SpoolPartition.open({ dir, syncAfterWrite: true, sync: held.sync });
    const order: string[] = [];
    let sizeAtWritten = -1;
    const appended = p.appendMessage(env('w1'), Buffer.from('early'), () => {
      order.push('written');
      sizeAtWritten = statSync(join(dir, segFiles(dir)[0])).size;
    });
    void appended.then(() => order.push('resolved'));
    await waitUntil(() => held.pending.length === 1, 5_000, () => 'the partition never synced');
    expect(order).toEqual(['written']);
    // The bytes are readable (the mirror's scan sees them) while the local sync is still running.
    expect(sizeAtWritten).toBeGreaterThan(5);
    expect(p.get('w1')).toBeUndefined();
    held.pending[0].release();
    await appended;
    expect(order).toEqual(['written', 'resolved']);
    expect(p.get('w1')).toBeDefined();
    await p.close();
  });

  test('a sync that fails rejects the append (after written was called) and cuts its record off', async () => {
    const dir = join(root, 'after-write-fails');
    const held = heldSyncs();
    const p = await SpoolPartition.open({ dir, syncAfterWrite: true, sync: held.sync });
    const first = p.appendMessage(env('ok1'), Buffer.from('kept'));
    await waitUntil(() => held.pending.length === 1, 5_000, () => 'the partition never synced');
    held.pending[0].release();
    await first;
    const kept = statSync(join(dir, segFiles(dir)[0])).size;
    let written = false;
    const failing = p.appendMessage(env('bad1'), Buffer.from('lost'), () => (written = true));
    await waitUntil(() => held.pending.length === 2, 5_000, () => 'the partition never synced');
    held.pending[1].release(Object.assign(new Error('EIO: sync failed'), { code: 'EIO' }));
    await expect(failing).rejects.toMatchObject({ code: 'EIO' });
    expect(written).toBe(true);
    expect(p.get('bad1')).toBeUndefined();
    expect(statSync(join(dir, segFiles(dir)[0])).size).toBe(kept);
    await p.close();
  });
});
