import { appendFileSync, readdirSync, statSync, truncateSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { SpoolPartition } from '../../../../runtime/mta/spool/partition';
import type { Envelope } from '../../../../runtime/mta/spool/types';
import { RecordType } from '../../../../runtime/mta/spool/record';
import { tempDir } from '../../../helpers/tmp';

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
