// The replication engine without the network: a Sender on one directory, its
// batches applied by applyBatch to another, as the two daemons do over the
// link. Checks the catch-up plan, tailing, truncations, deletions, whole
// files, a diverged history's full copy and the resync rate; a SQLite file
// being written arrives whole and consistent (Debian's sqlite3 checks it).
import { appendFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { applyBatch, parseOps } from '../../../runtime/mirror/apply';
import { inventory } from '../../../runtime/mirror/files';
import { FRAME_HEADER_ROOM, SQLITE_SNAPSHOT_MIN_MS, Sender } from '../../../runtime/mirror/sender';
import { tempDir } from '../../helpers/tmp';

/** Runs before each read the sender makes (tests: a file changing between the scan and the read). */
let mockBeforeRead: ((file: string) => void) | undefined;
/** A SQLite snapshot that cannot be taken now (its WAL restarting at every attempt). */
let mockSnapshotBusy = false;
jest.mock('../../../runtime/mirror/files', () => {
  const actual = jest.requireActual<typeof import('../../../runtime/mirror/files')>('../../../runtime/mirror/files');
  return {
    ...actual,
    readRange: (file: string, offset: number, length: number) => {
      mockBeforeRead?.(file);
      return actual.readRange(file, offset, length);
    },
    readWhole: (file: string) => {
      mockBeforeRead?.(file);
      return actual.readWhole(file);
    },
    sqliteSnapshot: async (file: string, scratch: string) => (mockSnapshotBusy ? 'busy' : actual.sqliteSnapshot(file, scratch)),
  };
});

const base = tempDir('volley-mirror-sender-');
let n = 0;
function pair(): { primary: string; secondary: string } {
  n++;
  const primary = join(base, `p${n}`);
  const secondary = join(base, `s${n}`);
  mkdirSync(join(primary, 'spool', 'p0'), { recursive: true });
  mkdirSync(secondary, { recursive: true });
  return { primary, secondary };
}

function put(root: string, rel: string, data: string | Buffer): void {
  mkdirSync(join(root, rel, '..'), { recursive: true });
  writeFileSync(join(root, rel), data);
}

/** Every replicated file's sha256 under root. */
function sums(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string, prefix: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (rel !== 'mirror') walk(join(dir, e.name), rel);
      } else if (rel !== 'mta.lock') out[rel] = createHash('sha256').update(readFileSync(join(dir, e.name))).digest('hex');
    }
  };
  walk(root, '');
  return out;
}

/** Runs the sender until it has nothing more, applying each batch; returns the bytes it shipped. */
async function drain(sender: Sender, secondary: string): Promise<number> {
  let bytes = 0;
  for (let i = 0; i < 1000; i++) {
    const batch = await sender.next();
    if (!batch) return bytes;
    await applyBatch(secondary, parseOps(JSON.parse(JSON.stringify(batch.ops)), batch.body.length), batch.body);
    bytes += batch.body.length;
    sender.acked(batch);
  }
  throw new Error('the sender never ran out of batches');
}

async function connect(primary: string, secondary: string, opts: { batchMaxBytes?: number; resyncRateBytes?: number; now?: () => number } = {}): Promise<Sender> {
  const sender = new Sender({ root: primary, batchMaxBytes: opts.batchMaxBytes ?? 1 << 20, resyncRateBytes: opts.resyncRateBytes ?? 1 << 30, now: opts.now });
  await sender.start(await inventory(secondary));
  return sender;
}

describe('Sender + applyBatch', () => {
  it('copies a persistent path byte for byte, then tails appends, truncations, rewrites and deletions', async () => {
    const { primary, secondary } = pair();
    put(primary, 'spool/p0/000000000001.seg', 'record-1\n');
    put(primary, 'log/events/w0.20261205T000000000Z-000001.jsonl', '{"a":1}\n');
    put(primary, 'node-id', 'node-a\n');
    put(primary, 'mta.lock', '12345\n');
    put(primary, 'mirror/state.json', '{"role":"primary","epoch":3}');
    const sender = await connect(primary, secondary, { batchMaxBytes: 5 });
    await drain(sender, secondary);
    expect(sums(secondary)).toEqual(sums(primary));
    // Never replicated: the lock names a local pid, the state is this node's own.
    expect(existsSync(join(secondary, 'mta.lock'))).toBe(false);
    expect(existsSync(join(secondary, 'mirror'))).toBe(false);
    expect(sender.stats()).toMatchObject({ caughtUp: true, lagBytes: 0 });

    appendFileSync(join(primary, 'spool/p0/000000000001.seg'), 'record-2\n');
    const shipped = await drain(sender, secondary);
    expect(shipped).toBe('record-2\n'.length);
    expect(sums(secondary)).toEqual(sums(primary));

    // A torn tail cut by the spool on restart: the secondary follows.
    truncateSync(join(primary, 'spool/p0/000000000001.seg'), 'record-1\n'.length);
    await drain(sender, secondary);
    expect(statSync(join(secondary, 'spool/p0/000000000001.seg')).size).toBe('record-1\n'.length);
    // Followed as a truncation, not by copying the file again.
    expect(sender.stats().fullResyncs).toBe(0);

    // A cursor rewritten by rename, a new segment, a deleted event file.
    put(primary, 'log/events/.cursor.tmp', '{"file":"x","offset":9}');
    renameSync(join(primary, 'log/events/.cursor.tmp'), join(primary, 'log/events/cursor.json'));
    put(primary, 'spool/p0/000000000002.seg', Buffer.alloc(1_000, 7));
    await drain(sender, secondary);
    expect(sums(secondary)).toEqual(sums(primary));
    const cursorWas = readFileSync(join(secondary, 'log/events/cursor.json'), 'utf8');
    put(primary, 'log/events/.cursor.tmp', '{"file":"y","offset":1}');
    renameSync(join(primary, 'log/events/.cursor.tmp'), join(primary, 'log/events/cursor.json'));
    await drain(sender, secondary);
    expect(readFileSync(join(secondary, 'log/events/cursor.json'), 'utf8')).not.toBe(cursorWas);
    expect(sums(secondary)).toEqual(sums(primary));

    truncateSync(join(primary, 'log/events/w0.20261205T000000000Z-000001.jsonl'), 0);
    const { rmSync } = await import('node:fs');
    rmSync(join(primary, 'log/events/w0.20261205T000000000Z-000001.jsonl'));
    await drain(sender, secondary);
    expect(existsSync(join(secondary, 'log/events/w0.20261205T000000000Z-000001.jsonl'))).toBe(false);
    expect(sums(secondary)).toEqual(sums(primary));
  });

  it('resumes a returning secondary from its own sizes: only the missing bytes travel', async () => {
    const { primary, secondary } = pair();
    const seg = 'spool/p0/000000000001.seg';
    put(primary, seg, Buffer.alloc(50_000, 1));
    await drain(await connect(primary, secondary), secondary);
    // The secondary is away while the primary takes more mail.
    appendFileSync(join(primary, seg), Buffer.alloc(3_000, 2));
    put(primary, 'spool/p0/000000000002.seg', Buffer.alloc(2_000, 3));
    const sender = await connect(primary, secondary);
    expect(await drain(sender, secondary)).toBe(5_000);
    expect(sums(secondary)).toEqual(sums(primary));
    expect(sender.stats().fullResyncs).toBe(0);
  });

  it('copies a diverged file whole (and a file the secondary holds more of), deletes what the primary no longer has', async () => {
    const { primary, secondary } = pair();
    const seg = 'spool/p0/000000000001.seg';
    put(primary, seg, Buffer.alloc(20_000, 1));
    put(primary, 'spool/p0/000000000002.seg', Buffer.alloc(100, 4));
    await drain(await connect(primary, secondary), secondary);
    // The secondary's copy diverged in its last block; it also holds a longer
    // second segment and a file the primary deleted meanwhile.
    const diverged = readFileSync(join(secondary, seg));
    diverged[19_999] = 9;
    writeFileSync(join(secondary, seg), diverged);
    appendFileSync(join(secondary, 'spool/p0/000000000002.seg'), 'tail only the secondary has');
    put(secondary, 'spool/p0/000000000000.seg', 'compacted away on the primary');
    const sender = await connect(primary, secondary);
    await drain(sender, secondary);
    expect(sums(secondary)).toEqual(sums(primary));
    expect(sender.stats().fullResyncs).toBe(2);

    // A history rewritten on the primary after it was sent (same size): found by the last block's checksum.
    const now = readFileSync(join(primary, seg));
    now[19_000] = 5;
    writeFileSync(join(primary, seg), now);
    await drain(sender, secondary);
    expect(sums(secondary)).toEqual(sums(primary));
    expect(sender.stats().fullResyncs).toBe(3);
  });

  it('holds full copies to resync_rate (bytes per second of the injected clock)', async () => {
    const { primary, secondary } = pair();
    put(primary, 'spool/p0/000000000001.seg', Buffer.alloc(10_000, 1));
    put(secondary, 'spool/p0/000000000001.seg', Buffer.alloc(10_000, 2));
    let clock = 1_000_000;
    const sender = await connect(primary, secondary, { resyncRateBytes: 4_000, now: () => clock });
    const sizes: number[] = [];
    for (let i = 0; i < 10; i++) {
      const batch = await sender.next();
      if (!batch) break;
      await applyBatch(secondary, batch.ops, batch.body);
      sender.acked(batch);
      sizes.push(batch.body.length);
      clock += 500; // half a second between batches: 2,000 bytes of allowance each
    }
    expect(sizes).toEqual([4_000, 2_000, 2_000, 2_000]);
    expect(sums(secondary)).toEqual(sums(primary));
    expect(sender.stats()).toMatchObject({ caughtUp: true, lagBytes: 0 });
  });

  it('a secondary whose position was deleted (its last segment rotated away) gets a full copy of the live segments, at resync_rate', async () => {
    const { primary, secondary } = pair();
    put(primary, 'spool/p0/000000000001.seg', Buffer.alloc(3_000, 1));
    await drain(await connect(primary, secondary), secondary);
    // Away: the primary's segments roll on and the one the secondary stopped in is reclaimed.
    const { rmSync } = await import('node:fs');
    rmSync(join(primary, 'spool/p0/000000000001.seg'));
    put(primary, 'spool/p0/000000000002.seg', Buffer.alloc(6_000, 2));
    put(primary, 'spool/p0/000000000003.seg', Buffer.alloc(2_000, 3));
    // Another partition that only grew: resumed, not copied.
    put(primary, 'spool/p1/000000000001.seg', Buffer.alloc(1_000, 4));
    put(secondary, 'spool/p1/000000000001.seg', Buffer.alloc(500, 4));
    let clock = 1_000_000;
    const sender = await connect(primary, secondary, { resyncRateBytes: 4_000, now: () => clock });
    const sizes: number[] = [];
    for (let i = 0; i < 10; i++) {
      const batch = await sender.next();
      if (!batch) break;
      await applyBatch(secondary, batch.ops, batch.body);
      sender.acked(batch);
      sizes.push(batch.body.length);
      clock += 1_000;
    }
    expect(sums(secondary)).toEqual(sums(primary));
    expect(sender.stats().fullResyncs).toBe(2);
    // 8,000 bytes of full copy at 4,000 a second (the other partition's 500 new bytes unthrottled in the first batch).
    expect(sizes).toEqual([4_500, 4_000]);
  });

  it('measures lag in bytes and seconds until the durable ack', async () => {
    const { primary, secondary } = pair();
    let clock = 5_000;
    const sender = await connect(primary, secondary, { now: () => clock });
    expect(await sender.next()).toBeUndefined();
    expect(sender.stats()).toMatchObject({ lagBytes: 0, lagSeconds: 0, caughtUp: true });
    put(primary, 'spool/p0/000000000001.seg', Buffer.alloc(1_234, 1));
    const batch = (await sender.next())!;
    clock += 1_500;
    expect(sender.stats()).toMatchObject({ lagBytes: 1_234, lagSeconds: 1.5, caughtUp: false });
    await applyBatch(secondary, batch.ops, batch.body);
    sender.acked(batch);
    expect(await sender.next()).toBeUndefined();
    expect(sender.stats()).toMatchObject({ lagBytes: 0, lagSeconds: 0, caughtUp: true });
  });

  it('moves durableThrough to a scan\'s time only once every change seen then is acknowledged durable', async () => {
    const { primary, secondary } = pair();
    let clock = 10_000;
    const sender = await connect(primary, secondary, { batchMaxBytes: 1_000, now: () => clock });
    expect(await sender.next()).toBeUndefined();
    expect(sender.stats().durableThrough).toBe(10_000);
    clock = 20_000;
    put(primary, 'spool/p0/000000000001.seg', Buffer.alloc(1_500, 1));
    const partial = (await sender.next())!;
    expect(partial.complete).toBe(false); // 1,000 of 1,500 bytes: the batch limit held some back
    clock = 21_000;
    await applyBatch(secondary, partial.ops, partial.body);
    sender.acked(partial);
    expect(sender.stats().durableThrough).toBe(10_000);
    const rest = (await sender.next())!;
    expect(rest.complete).toBe(true);
    clock = 22_000;
    expect(sender.stats().durableThrough).toBe(10_000); // sent, not yet durable
    await applyBatch(secondary, rest.ops, rest.body);
    sender.acked(rest);
    expect(sender.stats().durableThrough).toBe(21_000);
  });

  // A sink's cursor names a position in the event log; on a secondary that holds
  // the cursor but not the bytes before it, the new primary's MTA appends its
  // events below the cursor after a promotion, and the sink never sends them.
  const LOG = 'log/events/w0.20261205T000000000Z-000001.jsonl';
  const CURSOR = 'log/events/cursors/webhook.json';
  const cursorAt = (offset: number, note = ''): string => `${JSON.stringify({ sink: 'webhook', note, producers: { w0: { file: LOG.split('/').pop(), offset } } })}\n`;
  const cursorOffset = (root: string): number => (JSON.parse(readFileSync(join(root, CURSOR), 'utf8')) as { producers: { w0: { offset: number } } }).producers.w0.offset;
  const logSize = (root: string): number => (existsSync(join(root, LOG)) ? statSync(join(root, LOG)).size : 0);
  /** One batch sent and applied, `change` running once just before the sender's first read of a file. */
  const oneBatchChangingBeforeRead = async (sender: Sender, secondary: string, change: () => void): Promise<void> => {
    mockBeforeRead = () => {
      mockBeforeRead = undefined;
      change();
    };
    try {
      const batch = (await sender.next())!;
      await applyBatch(secondary, batch.ops, batch.body);
      sender.acked(batch);
    } finally {
      mockBeforeRead = undefined;
    }
  };

  it('never ships a cursor ahead of the log bytes it names: a cursor saved between the scan and its read', async () => {
    const { primary, secondary } = pair();
    put(primary, LOG, '{"e":1}\n');
    put(primary, CURSOR, cursorAt(8));
    const sender = await connect(primary, secondary);
    await drain(sender, secondary);
    // The sink saves its cursor again (same place), and while the sender reads it the MTA logs an
    // event and the sink, having sent it, moves its cursor past it.
    put(primary, CURSOR, cursorAt(8, 'saved again'));
    await oneBatchChangingBeforeRead(sender, secondary, () => {
      appendFileSync(join(primary, LOG), '{"e":2}\n');
      put(primary, CURSOR, cursorAt(16));
    });
    expect(cursorOffset(secondary)).toBeLessThanOrEqual(logSize(secondary));
    await drain(sender, secondary);
    expect(sums(secondary)).toEqual(sums(primary));
  });

  it('ships a small file renamed over between the scan and its read whole, never cut to the size the scan saw', async () => {
    const { primary, secondary } = pair();
    put(primary, CURSOR, cursorAt(8));
    const sender = await connect(primary, secondary);
    await drain(sender, secondary);
    put(primary, CURSOR, cursorAt(8, 'saved again'));
    // While the sender reads it, the sink saves a longer one (written beside and renamed over, as CursorStore does).
    const longer = cursorAt(8, 'saved once more, with a longer note than before');
    await oneBatchChangingBeforeRead(sender, secondary, () => {
      writeFileSync(join(primary, `${CURSOR}.tmp`), longer);
      renameSync(join(primary, `${CURSOR}.tmp`), join(primary, CURSOR));
    });
    expect(readFileSync(join(secondary, CURSOR), 'utf8')).toBe(longer);
    await drain(sender, secondary);
    expect(sums(secondary)).toEqual(sums(primary));
  });

  it('never ships a cursor ahead of the log bytes it names: a log larger than one batch', async () => {
    const { primary, secondary } = pair();
    put(primary, LOG, '{"e":0}\n');
    put(primary, CURSOR, cursorAt(8));
    const sender = await connect(primary, secondary, { batchMaxBytes: 1_000 });
    await drain(sender, secondary);
    // 3,000 bytes of events, all sent to the sink already: its cursor is at the end.
    appendFileSync(join(primary, LOG), `${'{"e":1}\n'.repeat(375)}`);
    put(primary, CURSOR, cursorAt(logSize(primary)));
    let batches = 0;
    for (let batch = await sender.next(); batch; batch = await sender.next()) {
      await applyBatch(secondary, batch.ops, batch.body);
      sender.acked(batch);
      batches++;
      // A failover may come after any batch: the secondary's cursor never names bytes it lacks.
      expect(cursorOffset(secondary)).toBeLessThanOrEqual(logSize(secondary));
    }
    expect(batches).toBeGreaterThan(1);
    expect(sums(secondary)).toEqual(sums(primary));
  });
});

test('a small file larger than the room the log bytes leave in a batch still reaches the secondary while mail keeps flowing', async () => {
  const { primary, secondary } = pair();
  const seg = 'spool/p0/000000000001.seg';
  put(primary, seg, 'record-0\n');
  // batch_max and an unmatched report's size, scaled down 1000x (4 MB and up to 10 MB by default).
  const sender = new Sender({ root: primary, batchMaxBytes: 4_000, resyncRateBytes: 1 << 30 });
  await sender.start(await inventory(secondary));
  const eml = 'inbound/unmatched/20261205T130000000Z-0a0b0c0d0e0f.eml';
  put(primary, eml, Buffer.alloc(6_000, 0x61));
  for (let i = 0; i < 5; i++) {
    // The MTA keeps taking mail: every scan finds new log bytes.
    appendFileSync(join(primary, seg), `record-${i + 1}\n`);
    const batch = await sender.next();
    if (!batch) break;
    await applyBatch(secondary, parseOps(JSON.parse(JSON.stringify(batch.ops)), batch.body.length), batch.body);
    sender.acked(batch);
  }
  expect(existsSync(join(secondary, eml))).toBe(true);
  expect(readFileSync(join(secondary, eml)).equals(readFileSync(join(primary, eml)))).toBe(true);
  appendFileSync(join(primary, seg), 'record-last\n');
  const last = (await sender.next())!;
  expect(last.complete).toBe(true);
  await applyBatch(secondary, parseOps(JSON.parse(JSON.stringify(last.ops)), last.body.length), last.body);
  sender.acked(last);
  expect(await sender.next()).toBeUndefined();
  expect(sender.stats()).toMatchObject({ lagBytes: 0, caughtUp: true });
});

describe('applyBatch', () => {
  it('refuses a batch whose bytes do not match their checksum, and paths outside the persistent path', async () => {
    const { secondary } = pair();
    const body = Buffer.from('abc');
    await expect(applyBatch(secondary, [{ op: 'write', path: 'spool/p0/000000000001.seg', offset: 0, len: 3, sha256: 'f'.repeat(64) }], body)).rejects.toMatchObject({ code: 'EMIRRORSUM' });
    expect(() => parseOps([{ op: 'write', path: '../etc/passwd', offset: 0, len: 3, sha256: 'x' }], 3)).toThrow(expect.objectContaining({ code: 'EMIRRORPATH' }));
    expect(() => parseOps([{ op: 'delete', path: 'mirror/state.json' }], 0)).toThrow(expect.objectContaining({ code: 'EMIRRORPATH' }));
    expect(() => parseOps([{ op: 'delete', path: '/abs' }], 0)).toThrow(expect.objectContaining({ code: 'EMIRRORPATH' }));
    expect(() => parseOps([{ op: 'write', path: 'a.seg', offset: 0, len: 5, sha256: 'x' }], 3)).toThrow(expect.objectContaining({ code: 'EMIRRORBATCH' }));
  });

  it('refuses, whole and before writing anything, a batch that would leave a hole or overwrite bytes this node holds', async () => {
    const { secondary } = pair();
    const seg = 'spool/p0/000000000001.seg';
    put(secondary, seg, 'held\n');
    const data = Buffer.from('next\n');
    const write = (offset: number) => ({ op: 'write' as const, path: seg, offset, len: data.length, sha256: createHash('sha256').update(data).digest('hex') });
    const other = { op: 'write' as const, path: 'spool/p0/000000000002.seg', offset: 0, len: data.length, sha256: createHash('sha256').update(data).digest('hex') };
    await expect(applyBatch(secondary, [other, write(9)], Buffer.concat([data, data]))).rejects.toMatchObject({ code: 'EMIRRORGAP' });
    await expect(applyBatch(secondary, [other, write(2)], Buffer.concat([data, data]))).rejects.toMatchObject({ code: 'EMIRROROWN' });
    await expect(applyBatch(secondary, [{ op: 'truncate', path: seg, size: 9 }])).rejects.toMatchObject({ code: 'EMIRRORGAP' });
    expect(readFileSync(join(secondary, seg), 'utf8')).toBe('held\n');
    expect(existsSync(join(secondary, 'spool/p0/000000000002.seg'))).toBe(false);
    // At the end, or after the batch's own truncate: written.
    await applyBatch(secondary, [write(5)], data);
    await applyBatch(secondary, [{ op: 'truncate', path: seg, size: 0 }, write(0)], data);
    expect(readFileSync(join(secondary, seg), 'utf8')).toBe('next\n');
  });
});

describe('the frame limit', () => {
  it('no batch is longer than a frame; a whole file that cannot fit in one is refused (not in the lag), the rest replicates, and it goes once small enough', async () => {
    const { primary, secondary } = pair();
    // A frame of FRAME_HEADER_ROOM + 64 KiB: 32 KiB of log bytes a batch, whole files up to 32 KiB.
    const sender = new Sender({ root: primary, batchMaxBytes: 1 << 20, resyncRateBytes: 1 << 30, frameMaxBytes: FRAME_HEADER_ROOM + 65_536 });
    await sender.start(await inventory(secondary));
    const big = 'inbound/unmatched/big.eml';
    put(primary, big, Buffer.alloc(40_000, 'x'));
    put(primary, 'inbound/unmatched/fits.eml', Buffer.alloc(30_000, 'y'));
    put(primary, 'spool/p0/000000000001.seg', Buffer.alloc(100_000, 'm'));
    for (let i = 0; i < 100; i++) {
      const batch = await sender.next();
      if (!batch) break;
      expect(batch.body.length).toBeLessThanOrEqual(65_536);
      await applyBatch(secondary, batch.ops, batch.body);
      sender.acked(batch);
    }
    expect(statSync(join(secondary, 'spool/p0/000000000001.seg')).size).toBe(100_000);
    expect(statSync(join(secondary, 'inbound/unmatched/fits.eml')).size).toBe(30_000);
    expect(existsSync(join(secondary, big))).toBe(false);
    expect(sender.stats()).toMatchObject({ refused: [{ path: big, size: 40_000 }], lagBytes: 0 });
    writeFileSync(join(primary, big), 'small now\n');
    await drain(sender, secondary);
    expect(readFileSync(join(secondary, big), 'utf8')).toBe('small now\n');
    expect(sender.stats().refused).toEqual([]);
  });
});

describe('SQLite databases', () => {
  /** A SQLite sink's open file as the sink writes it (WAL, no automatic checkpoint: the test says when). */
  function openSink(root: string, rel: string): { commit: (n: number) => number; db: DatabaseSync } {
    mkdirSync(join(root, rel, '..'), { recursive: true });
    const db = new DatabaseSync(join(root, rel));
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE events (event_id TEXT PRIMARY KEY, body TEXT)');
    const insert = db.prepare('INSERT INTO events VALUES (?, ?)');
    let rows = 0;
    const commit = (n: number): number => {
      db.exec('BEGIN');
      for (let i = 0; i < n; i++) insert.run(`ev-${rows++}`, 'x'.repeat(300));
      db.exec('COMMIT');
      return rows;
    };
    return { commit, db };
  }

  /** Debian's sqlite3 on a copy of the secondary's folder (opening it there would write a -shm beside it): integrity and rows. */
  function check(secondary: string, rel: string): { integrity: string; rows: number } {
    const scratch = join(base, `check-${++n}`);
    cpSync(join(secondary, rel, '..'), scratch, { recursive: true });
    const out = execFileSync('sqlite3', [join(scratch, rel.split('/').pop() as string), 'PRAGMA integrity_check;', 'SELECT count(*) FROM events;'], { encoding: 'utf8' }).trim().split('\n');
    return { integrity: out.slice(0, -1).join('\n'), rows: Number(out[out.length - 1]) };
  }

  it('an open SQLite file written (and checkpointed) while the mirror reads it reaches the secondary as one database that passes integrity_check and holds every row its cursor counts', async () => {
    const { primary, secondary } = pair();
    const rel = 'events/sqlite/acct/acct.20261205T030000000Z.open.sqlite';
    const cursor = 'log/events/cursors/acct.json';
    const sink = openSink(primary, rel);
    try {
      // The sink committed 200 rows, then its cursor moved past them.
      put(primary, cursor, JSON.stringify({ rows: sink.commit(200) }));
      let clock = 1_000_000;
      const sender = await connect(primary, secondary, { now: () => clock });
      // The sink goes on while the mirror reads the SQLite file's pieces: more rows, a checkpoint that restarts the WAL, more rows.
      let reads = 0;
      mockBeforeRead = (file) => {
        if (!file.includes('.open.sqlite') || ++reads !== 2) return;
        sink.commit(200);
        sink.db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
        sink.commit(200);
      };
      // The primary is lost after this one batch: the secondary is promoted with what it holds.
      const batch = (await sender.next())!;
      mockBeforeRead = undefined;
      await applyBatch(secondary, parseOps(JSON.parse(JSON.stringify(batch.ops)), batch.body.length), batch.body);
      const counted = (JSON.parse(readFileSync(join(secondary, cursor), 'utf8')) as { rows: number }).rows;
      const copy = check(secondary, rel);
      expect(copy.integrity).toBe('ok');
      expect(copy.rows).toBeGreaterThanOrEqual(counted);
      // Neither the WAL nor the shared-memory file is shipped: the copy is whole without them.
      expect(readdirSync(join(secondary, 'events/sqlite/acct')).sort()).toEqual(['acct.20261205T030000000Z.open.sqlite']);
      // A later commit (in the WAL only: the database file's own time may not move) is shipped too.
      const total = sink.commit(50);
      sender.acked(batch);
      clock += SQLITE_SNAPSHOT_MIN_MS;
      await drain(sender, secondary);
      expect(check(secondary, rel)).toEqual({ integrity: 'ok', rows: total });
    } finally {
      mockBeforeRead = undefined;
      sink.db.close();
    }
  });

  it('a database changed within SQLITE_SNAPSHOT_MIN_MS of its last copy is not copied again yet (each copy is the whole file): its cursor waits with it, the batch still complete; then both go', async () => {
    const { primary, secondary } = pair();
    const rel = 'events/sqlite/acct/acct.20261205T060000000Z.open.sqlite';
    const cursor = 'log/events/cursors/acct.json';
    const sink = openSink(primary, rel);
    try {
      put(primary, cursor, JSON.stringify({ rows: sink.commit(10) }));
      let clock = 1_000_000;
      const sender = await connect(primary, secondary, { now: () => clock });
      await drain(sender, secondary);
      expect(check(secondary, rel)).toEqual({ integrity: 'ok', rows: 10 });
      // The sink goes on, its cursor with it; a spool record comes too, within the interval.
      put(primary, cursor, JSON.stringify({ rows: sink.commit(20) }));
      put(primary, 'spool/p0/000000000001.seg', 'record-1\n');
      clock += SQLITE_SNAPSHOT_MIN_MS / 2;
      const batch = (await sender.next())!;
      expect([...new Set(batch.ops.map((o) => o.path))]).toEqual(['spool/p0/000000000001.seg']);
      expect(batch.complete).toBe(true);
      await applyBatch(secondary, parseOps(JSON.parse(JSON.stringify(batch.ops)), batch.body.length), batch.body);
      sender.acked(batch);
      expect(readFileSync(join(secondary, cursor), 'utf8')).toBe(JSON.stringify({ rows: 10 }));
      clock += SQLITE_SNAPSHOT_MIN_MS;
      await drain(sender, secondary);
      expect(check(secondary, rel)).toEqual({ integrity: 'ok', rows: 30 });
      expect(readFileSync(join(secondary, cursor), 'utf8')).toBe(JSON.stringify({ rows: 30 }));
    } finally {
      sink.db.close();
    }
  });

  it('a snapshot held back by a full batch is taken again at the next scan: its cursor (read again) never goes ahead of it', async () => {
    const { primary, secondary } = pair();
    const rel = 'events/sqlite/acct/acct.20261205T070000000Z.open.sqlite';
    const cursor = 'log/events/cursors/acct.json';
    const sink = openSink(primary, rel);
    try {
      let clock = 1_000_000;
      const sender = await connect(primary, secondary, { batchMaxBytes: 4096, now: () => clock });
      put(primary, cursor, JSON.stringify({ rows: sink.commit(10) }));
      await drain(sender, secondary);
      clock += 5 * SQLITE_SNAPSHOT_MIN_MS;
      // The sink commits and moves its cursor; spool bytes fill this scan's room, so the snapshot is held back.
      put(primary, cursor, JSON.stringify({ rows: sink.commit(20) }));
      put(primary, 'spool/p0/000000000001.seg', 'r'.repeat(20_000));
      const held = (await sender.next())!;
      expect(held.complete).toBe(false);
      await applyBatch(secondary, parseOps(JSON.parse(JSON.stringify(held.ops)), held.body.length), held.body);
      sender.acked(held);
      clock += 5 * SQLITE_SNAPSHOT_MIN_MS;
      // The sink is quiet from here: what it wrote must still go.
      await drain(sender, secondary);
      expect(readFileSync(join(secondary, cursor), 'utf8')).toBe(JSON.stringify({ rows: 30 }));
      expect(check(secondary, rel)).toEqual({ integrity: 'ok', rows: 30 });
    } finally {
      sink.db.close();
    }
  });

  it('no copy is put off in a batch that deletes an event file: the cursor held back would name a file the secondary no longer has', async () => {
    const { primary, secondary } = pair();
    const rel = 'events/sqlite/acct/acct.20261205T080000000Z.open.sqlite';
    const cursor = 'log/events/cursors/acct.json';
    const F = 'log/events/w0.20261205T000000000Z-000001.jsonl';
    const G = 'log/events/w0.20261205T000100000Z-000002.jsonl';
    const sink = openSink(primary, rel);
    try {
      let clock = 1_000_000;
      const sender = await connect(primary, secondary, { now: () => clock });
      put(primary, F, '{"e":1}\n{"e":2}\n{"e":3}\n');
      sink.commit(1);
      put(primary, cursor, JSON.stringify({ producers: { w0: { file: F.split('/').pop(), offset: 8 } } }));
      await drain(sender, secondary);
      // Within the interval: the sink read the rest of F (3 rows in all), its cursor moved into G, retention removed F.
      clock += SQLITE_SNAPSHOT_MIN_MS / 4;
      put(primary, G, '{"e":4}\n');
      sink.commit(3);
      put(primary, cursor, JSON.stringify({ producers: { w0: { file: G.split('/').pop(), offset: 8 } } }));
      rmSync(join(primary, F));
      const batch = (await sender.next())!;
      await applyBatch(secondary, parseOps(JSON.parse(JSON.stringify(batch.ops)), batch.body.length), batch.body);
      sender.acked(batch);
      expect(existsSync(join(secondary, F))).toBe(false);
      expect(check(secondary, rel)).toEqual({ integrity: 'ok', rows: 4 });
      expect(JSON.parse(readFileSync(join(secondary, cursor), 'utf8'))).toEqual({ producers: { w0: { file: G.split('/').pop(), offset: 8 } } });
    } finally {
      sink.db.close();
    }
  });

  it('a sink whose custom dir is another sink\'s default folder: its copy is never put off (its cursor is not guessed)', async () => {
    const { primary, secondary } = pair();
    const rel = 'events/sqlite/billing/acct.20261205T090000000Z.open.sqlite';
    const cursor = 'log/events/cursors/acct.json';
    const sink = openSink(primary, rel);
    try {
      let clock = 1_000_000;
      const sender = await connect(primary, secondary, { now: () => clock });
      put(primary, cursor, JSON.stringify({ rows: sink.commit(10) }));
      await drain(sender, secondary);
      put(primary, cursor, JSON.stringify({ rows: sink.commit(20) }));
      clock += SQLITE_SNAPSHOT_MIN_MS / 2;
      await drain(sender, secondary);
      expect(check(secondary, rel)).toEqual({ integrity: 'ok', rows: 30 });
    } finally {
      sink.db.close();
    }
  });

  it('a cursor waits with the SQLite snapshot that cannot be taken now: it never reaches the secondary without the rows it counts', async () => {
    const { primary, secondary } = pair();
    const rel = 'events/sqlite/acct/acct.20261205T050000000Z.open.sqlite';
    const cursor = 'log/events/cursors/acct.json';
    const sink = openSink(primary, rel);
    try {
      put(primary, cursor, JSON.stringify({ rows: sink.commit(10) }));
      const sender = await connect(primary, secondary);
      mockSnapshotBusy = true;
      // Nothing goes (the cursor is held back with the snapshot), and the secondary is not said to hold everything.
      expect(await sender.next()).toBeUndefined();
      expect(sender.stats()).toMatchObject({ caughtUp: false });
      expect(sender.stats().durableThrough).toBeUndefined();
      expect(existsSync(join(secondary, cursor))).toBe(false);
      mockSnapshotBusy = false;
      await drain(sender, secondary);
      expect(check(secondary, rel)).toEqual({ integrity: 'ok', rows: 10 });
      expect(readFileSync(join(secondary, cursor), 'utf8')).toBe(JSON.stringify({ rows: 10 }));
    } finally {
      mockSnapshotBusy = false;
      sink.db.close();
    }
  });

  it('a rotated (closed) SQLite file is copied byte for byte, and stale -wal/-shm beside the secondary\'s old copy are removed', async () => {
    const { primary, secondary } = pair();
    const open = 'events/sqlite/acct/acct.20261205T040000000Z.open.sqlite';
    const closed = 'events/sqlite/acct/acct.20261205T040000000Z.sqlite';
    const sink = openSink(primary, open);
    sink.commit(100);
    // Leftovers of an older mirror that copied the WAL apart.
    put(secondary, `${open}-wal`, 'stale wal');
    put(secondary, `${open}-shm`, 'stale shm');
    const sender = await connect(primary, secondary);
    await drain(sender, secondary);
    expect(readdirSync(join(secondary, 'events/sqlite/acct')).sort()).toEqual(['acct.20261205T040000000Z.open.sqlite']);
    expect(check(secondary, open)).toEqual({ integrity: 'ok', rows: 100 });
    // The sink rotates: checkpointed out of WAL, closed, renamed.
    sink.db.exec('PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE');
    sink.db.close();
    renameSync(join(primary, open), join(primary, closed));
    await drain(sender, secondary);
    expect(readdirSync(join(secondary, 'events/sqlite/acct')).sort()).toEqual(['acct.20261205T040000000Z.sqlite']);
    expect(readFileSync(join(secondary, closed)).equals(readFileSync(join(primary, closed)))).toBe(true);
    expect(check(secondary, closed)).toEqual({ integrity: 'ok', rows: 100 });
  });
});
