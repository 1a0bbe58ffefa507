// The SQLite sink against Debian's `sqlite3` tool: closed files hold one row
// per event (compared by event_id), are never touched again, a batch sent twice
// adds nothing, a SIGKILLed writer leaves every acknowledged batch readable,
// and files rotate by size and by age (fake timers).

import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { createSqliteSink, RECOVERY_GRACE_MS } from '../../../../../runtime/mta/events/sinks/sqlite';
import type { SqliteSinkConfig } from '../../../../../runtime/shared/config/events';
import type { SinkBatch, SinkDeps, VolleyEvent } from '../../../../../runtime/mta/events/types';
import { captureLogger, waitUntil } from '../../../../helpers/proxy-fixtures';
import { mountTmpfs } from '../../../../helpers/tmpfs';
import { sampleBatch } from '../../../../helpers/sqlite-events';
import { tempDir } from '../../../../helpers/tmp';

const root = tempDir('volley-sqlite-');
let seq = 0;

function setup(overrides: Partial<SqliteSinkConfig> = {}): { dir: string; config: SqliteSinkConfig; deps: SinkDeps } {
  const dir = join(root, `s${seq++}`);
  return {
    dir,
    config: { type: 'sqlite', name: 'acct', dir, maxSize: 1024 ** 3, maxAgeMs: 3_600_000, ...overrides },
    deps: { persistentPath: root, nodeId: 'n1', logger: pino({ level: 'silent' }) },
  };
}

type Row = Record<string, string | number | null>;

/** Rows as Debian's sqlite3 sees them, read-only (a reader must not change a closed file). */
function query(file: string, sql: string): Row[] {
  const out = execFileSync('sqlite3', ['-readonly', '-json', file, sql], { encoding: 'utf8' });
  return out.trim() ? (JSON.parse(out) as Row[]) : [];
}

function closed(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => /^acct\.\d{8}T\d{9}Z(-\d+)?\.sqlite$/.test(f))
    .sort()
    .map((f) => join(dir, f));
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function allEvents(batches: SinkBatch[]): Map<string, { event: VolleyEvent; line: string }> {
  const m = new Map<string, { event: VolleyEvent; line: string }>();
  for (const b of batches) b.events.forEach((event, i) => m.set(event.event_id, { event, line: b.lines[i] }));
  return m;
}

afterEach(() => jest.useRealTimers());

/** Fake timers and Date; fs callbacks and promise ticks stay real so file I/O completes. */
function fakeClock(now: number): void {
  jest.useFakeTimers({ now, doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
}

test('closed files hold one row per event, their columns read by sqlite3 equal to the events', async () => {
  const { dir, config, deps } = setup();
  const sink = createSqliteSink(config, deps);
  expect([sink.batchSize, sink.maxWaitMs, sink.concurrency]).toEqual([1000, 200, 1]);
  const batches = [sampleBatch(0, 40), sampleBatch(1, 25), sampleBatch(2, 1)];
  for (const b of batches) await sink.deliver(b);
  expect(closed(dir)).toEqual([]); // still open
  await sink.close();

  const [file] = closed(dir);
  expect(closed(dir)).toHaveLength(1);
  expect(readdirSync(dir).sort()).toEqual([file.slice(dir.length + 1)]); // no -wal, -shm, .open left
  expect(query(file, 'PRAGMA journal_mode')).toEqual([{ journal_mode: 'delete' }]);
  const rows = query(file, 'SELECT * FROM events ORDER BY id');
  const expected = allEvents(batches);
  expect(rows.map((r) => r.event_id)).toEqual([...expected.keys()]);
  for (const r of rows) {
    const { event, line } = expected.get(String(r.event_id))!;
    const e = event as unknown as Record<string, unknown>;
    const meta = event.metadata ?? {};
    expect(r).toEqual({
      id: r.id,
      event_id: event.event_id,
      time: event.time,
      kind: event.event,
      status: e.status ?? null,
      message_id: event.message_id ?? null,
      recipient: event.recipient ?? null,
      domain: event.domain ?? event.recipient!.split('@')[1].toLowerCase(),
      vmta: e.vmta ?? null,
      sending_ip: e.sending_ip ?? null,
      mx_host: e.mx_host ?? null,
      smtp_code: e.smtp_code ?? null,
      enhanced_code: e.enhanced_code ?? null,
      bounce_category: e.bounce_category ?? null,
      tenant: meta.tenant ?? null,
      campaign: meta.campaign ?? null,
      node: 'mta-1',
      metadata: JSON.stringify(meta),
      json: line,
    });
  }
  // Every kind is there, and the JSON column answers what the columns do not.
  expect(query(file, "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind")).toEqual([
    { kind: 'bounce', n: 6 },
    { kind: 'complaint', n: 6 },
    { kind: 'delivery', n: 54 },
  ]);
  expect(query(file, "SELECT json_extract(json, '$.feedback_type') AS f FROM events WHERE kind = 'complaint' LIMIT 1")).toEqual([{ f: 'abuse' }]);
  // The indexes the README promises exist.
  const indexes = query(file, "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'events_%' ORDER BY name").map((r) => r.name);
  expect(indexes).toEqual(
    ['bounce_category', 'campaign', 'domain', 'enhanced_code', 'kind', 'message_id', 'mx_host', 'recipient', 'sending_ip', 'smtp_code', 'status', 'tenant', 'time', 'vmta'].map((c) => `events_${c}`),
  );
  expect(sink.stats()).toMatchObject({ delivered: 3, deliveredEvents: 66, retries: 0, deadLettered: 0 });
});

test('handOver (a drain) closes the open file now, every row in it; with nothing open it closes nothing; the next batch starts a new file', async () => {
  const { dir, config, deps } = setup();
  const sink = createSqliteSink(config, deps);
  expect(sink.handOver()).toBe(false); // no batch yet: no file
  await sink.deliver(sampleBatch(0, 30));
  expect(sink.handOver()).toBe(true);
  expect(readdirSync(dir).filter((f) => f.endsWith('.open.sqlite'))).toEqual([]);
  const [file] = closed(dir);
  expect(query(file, 'SELECT count(*) AS n FROM events')).toEqual([{ n: 30 }]);
  expect(sink.handOver()).toBe(false);
  await sink.deliver(sampleBatch(1, 5));
  await sink.close();
  expect(closed(dir)).toHaveLength(2);
  expect(query(file, 'SELECT count(*) AS n FROM events')).toEqual([{ n: 30 }]);
});

test('a batch delivered twice adds no rows', async () => {
  const { dir, config, deps } = setup();
  const sink = createSqliteSink(config, deps);
  await sink.deliver(sampleBatch(0, 30));
  await sink.deliver(sampleBatch(0, 30));
  await sink.deliver(sampleBatch(1, 10));
  await sink.close();
  expect(query(closed(dir)[0], 'SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events')).toEqual([{ n: 40, d: 40 }]);
});

/** What sqlite3's `.indexes` lists for a file, sorted. */
function indexes(file: string): string[] {
  return execFileSync('sqlite3', ['-readonly', file, '.indexes'], { encoding: 'utf8' }).split(/\s+/).filter(Boolean).sort();
}

const READER_INDEXES = ['bounce_category', 'campaign', 'domain', 'enhanced_code', 'kind', 'message_id', 'mx_host', 'recipient', 'sending_ip', 'smtp_code', 'status', 'tenant', 'time', 'vmta'].map((c) => `events_${c}`);

test('an open file carries only the unique event_id index; the file is closed with every index, built then', async () => {
  const { dir, config, deps } = setup();
  const sink = createSqliteSink(config, deps);
  await sink.deliver(sampleBatch(0, 50));
  const [open] = readdirSync(dir).filter((f) => f.endsWith('.open.sqlite')).map((f) => join(dir, f));
  // What writing needs: the UNIQUE(event_id) index INSERT OR IGNORE relies on, nothing per reader column.
  expect(indexes(open)).toEqual(['sqlite_autoindex_events_1']);
  await sink.deliver(sampleBatch(1, 50));
  await sink.close();
  const [file] = closed(dir);
  expect(indexes(file)).toEqual([...READER_INDEXES, 'sqlite_autoindex_events_1'].sort());
  // Built over every row, not only those written after it: the planner uses it and finds them all.
  expect(execFileSync('sqlite3', ['-readonly', file, "EXPLAIN QUERY PLAN SELECT count(*) FROM events WHERE domain = 'gmail.com'"], { encoding: 'utf8' })).toContain('USING COVERING INDEX events_domain');
  expect(query(file, "SELECT count(*) AS n FROM events INDEXED BY events_kind WHERE kind = 'delivery'")).toEqual(query(file, "SELECT count(*) AS n FROM events NOT INDEXED WHERE kind = 'delivery'"));
  expect(query(file, 'PRAGMA integrity_check')).toEqual([{ integrity_check: 'ok' }]);
});

test('a closed file never changes: same sha256 after more writes, rotations and a reader', async () => {
  const { dir, config, deps } = setup({ maxSize: 64 * 1024 });
  const sink = createSqliteSink(config, deps);
  await sink.deliver(sampleBatch(0, 200)); // > 64 KB: rotated after this batch
  const [first] = closed(dir);
  expect(first).toBeDefined();
  const before = sha256(first);
  query(first, 'SELECT count(*) FROM events');
  for (let n = 1; n < 8; n++) await sink.deliver(sampleBatch(n, 200));
  await sink.close();
  expect(closed(dir).length).toBe(8);
  expect(sha256(first)).toBe(before);
  expect(readdirSync(dir).filter((f) => /-wal$|-shm$|\.open\./.test(f))).toEqual([]);
  // Every event in exactly one file.
  const ids = closed(dir).flatMap((f) => query(f, 'SELECT event_id FROM events').map((r) => r.event_id));
  expect(ids.length).toBe(1600);
  expect(new Set(ids).size).toBe(1600);
});

test('an idle file is closed at its age on the timer; a busy one at the batch that finds it old', async () => {
  fakeClock(Date.UTC(2026, 11, 5, 4, 0, 0));
  const { dir, config, deps } = setup({ maxAgeMs: 60_000 });
  const sink = createSqliteSink(config, deps);
  await sink.deliver(sampleBatch(0, 5));
  jest.advanceTimersByTime(59_999);
  expect(closed(dir)).toEqual([]);
  jest.advanceTimersByTime(1);
  expect(closed(dir).map((f) => f.slice(dir.length + 1))).toEqual(['acct.20261205T040000000Z.sqlite']);
  expect(query(closed(dir)[0], 'SELECT count(*) AS n FROM events')).toEqual([{ n: 5 }]);

  // Nothing open, nothing to close: an idle sink makes no empty files.
  jest.advanceTimersByTime(600_000);
  expect(closed(dir)).toHaveLength(1);

  // A file opened later rotates at its own deadline, counted from its start.
  await sink.deliver(sampleBatch(1, 5));
  jest.advanceTimersByTime(30_000);
  await sink.deliver(sampleBatch(2, 5));
  expect(closed(dir)).toHaveLength(1);
  jest.advanceTimersByTime(30_000);
  expect(closed(dir)).toHaveLength(2);
  expect(query(closed(dir)[1], 'SELECT count(*) AS n FROM events')).toEqual([{ n: 10 }]);
  await sink.close();
  expect(closed(dir)).toHaveLength(2);
});

test('SIGKILL while writing leaves every acknowledged batch readable; the restart continues the same file and drops the resent batch', async () => {
  const { dir, config, deps } = setup();
  mkdirSync(dir, { recursive: true });
  const script = join(__dirname, '../../../../helpers/sqlite-sink-child.ts');
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', script, dir, '1000', '50'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise((r) => child.once('exit', r));
  try {
    await waitUntil(() => (out.match(/^ack /gm) ?? []).length >= 20 || child.exitCode !== null, 30_000, () => err);
    child.kill('SIGKILL');
    await exited;
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  expect(child.signalCode).toBe('SIGKILL');
  // Loading node:sqlite on the Node we pin prints no ExperimentalWarning.
  expect(err).not.toMatch(/ExperimentalWarning|SQLite is an experimental/);
  const acked = (out.match(/^ack (\d+)$/gm) ?? []).map((l) => Number(l.slice(4)));
  expect(acked.length).toBeGreaterThanOrEqual(20);

  const open = readdirSync(dir).filter((f) => f.endsWith('.open.sqlite'));
  expect(open).toHaveLength(1);
  // Read a copy with sqlite3 (it replays the WAL), so the original stays as the crash left it.
  const copy = join(root, `crash-copy-${seq}`);
  mkdirSync(copy);
  for (const f of readdirSync(dir)) writeFileSync(join(copy, f), readFileSync(join(dir, f)));
  const ids = new Set(query(join(copy, open[0]), 'SELECT event_id FROM events').map((r) => String(r.event_id)));
  for (const n of acked) for (const e of sampleBatch(n, 50).events) expect(ids.has(e.event_id)).toBe(true);

  // Restart: the dispatcher resends from its cursor, which may trail the last ack.
  const sink = createSqliteSink(config, deps);
  const last = acked[acked.length - 1];
  await sink.deliver(sampleBatch(last, 50));
  await sink.deliver(sampleBatch(last + 1, 50));
  await sink.close();
  const files = closed(dir);
  expect(files).toHaveLength(1);
  expect(files[0]).toBe(join(dir, open[0].replace('.open.sqlite', '.sqlite')));
  const rows = query(files[0], 'SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events');
  expect(rows[0].n).toBe(rows[0].d);
  expect(Number(rows[0].n)).toBeGreaterThanOrEqual((acked.length + 1) * 50);
});

/**
 * What a crash leaves of a live sink's directory, without killing this
 * process: its files as they are on disk, committed rows in the WAL (synced at
 * every commit). The -shm index is not copied: SQLite rebuilds it.
 */
function crashImage(from: string, to: string, rename: (f: string) => string = (f) => f): void {
  mkdirSync(to, { recursive: true });
  for (const f of readdirSync(from)) if (!f.endsWith('-shm')) writeFileSync(join(to, rename(f)), readFileSync(join(from, f)));
}

test('a reopened crash file waits for the resend, then closes on age', async () => {
  fakeClock(Date.UTC(2026, 11, 5, 4, 0, 0));
  const live = setup({ maxAgeMs: 60_000 });
  const first = createSqliteSink(live.config, live.deps);
  await first.deliver(sampleBatch(0, 5));
  const { dir, config, deps } = setup({ maxAgeMs: 60_000 });
  crashImage(live.dir, dir);
  await first.close();
  // Two hours later the crashed file is long past its age.
  jest.setSystemTime(Date.UTC(2026, 11, 5, 6, 0, 0));
  const second = createSqliteSink(config, deps);
  jest.advanceTimersByTime(RECOVERY_GRACE_MS - 1);
  expect(closed(dir)).toEqual([]);
  await second.deliver(sampleBatch(0, 5)); // resent: lands in the same file, adds nothing
  expect(closed(dir)).toHaveLength(1); // and the batch found it old
  expect(query(closed(dir)[0], 'SELECT count(*) AS n FROM events')).toEqual([{ n: 5 }]);
  // Rotated after the resent batch went in, not before: no second file holds it again.
  await second.close();
  expect(readdirSync(dir)).toEqual([closed(dir)[0].slice(dir.length + 1)]);

  // Without a resend the grace runs out and the timer closes it.
  const third = setup({ maxAgeMs: 60_000 });
  crashImage(live.dir, third.dir, (f) => f); // the same crash image again
  const idle = createSqliteSink(third.config, third.deps);
  jest.advanceTimersByTime(RECOVERY_GRACE_MS);
  expect(closed(third.dir)).toHaveLength(1);
  await idle.close();
});

test('leftovers at start: an older .open is closed, an unreadable one is moved aside and never shipped', async () => {
  const a = setup();
  const sa = createSqliteSink(a.config, a.deps);
  await sa.deliver(sampleBatch(0, 3));
  const b = setup();
  const sb = createSqliteSink(b.config, b.deps);
  await sb.deliver(sampleBatch(1, 3));
  // Two open files, as a crash halfway through a rotation could leave them, and one that is not SQLite.
  const { dir, config, deps } = setup();
  crashImage(a.dir, dir, (f) => f.replace(/\d{8}T\d{9}Z/, '20261205T040000000Z'));
  crashImage(b.dir, dir, (f) => f.replace(/\d{8}T\d{9}Z/, '20261205T040000001Z'));
  await Promise.all([sa.close(), sb.close()]);
  writeFileSync(join(dir, 'acct.20200101T000000000Z.open.sqlite'), 'this is not an SQLite file, but it is long enough to be read as one: '.repeat(20));

  const restarted = createSqliteSink(config, deps);
  const names = readdirSync(dir).sort();
  expect(names).toEqual(['acct.20200101T000000000Z.broken.sqlite', 'acct.20261205T040000000Z.sqlite', 'acct.20261205T040000001Z.open.sqlite', 'acct.20261205T040000001Z.open.sqlite-wal', 'acct.20261205T040000001Z.open.sqlite-shm'].sort());
  expect(query(join(dir, 'acct.20261205T040000000Z.sqlite'), 'SELECT event_id FROM events ORDER BY id')).toEqual(['b0-0', 'b0-1', 'b0-2'].map((event_id) => ({ event_id })));
  // Closed at start is closed all the same: with the readers' indexes.
  expect(indexes(join(dir, 'acct.20261205T040000000Z.sqlite'))).toEqual([...READER_INDEXES, 'sqlite_autoindex_events_1'].sort());
  const source = restarted.shipSource();
  expect(await source.closedFiles()).toEqual([join(dir, 'acct.20261205T040000000Z.sqlite')]);
  await restarted.deliver(sampleBatch(2, 3));
  await restarted.close();
  expect(await source.closedFiles()).toEqual([join(dir, 'acct.20261205T040000000Z.sqlite'), join(dir, 'acct.20261205T040000001Z.sqlite')]);
  expect(query(join(dir, 'acct.20261205T040000001Z.sqlite'), 'SELECT event_id FROM events ORDER BY id').map((r) => r.event_id)).toEqual(['b1-0', 'b1-1', 'b1-2', 'b2-0', 'b2-1', 'b2-2']);
});

test('shipSource offers closed files oldest first, deletes a shipped one or keeps it in shipped/, and refuses a foreign path', async () => {
  fakeClock(Date.UTC(2026, 11, 5, 4, 0, 0));
  const { dir, config, deps } = setup({ maxAgeMs: 1_000 });
  const sink = createSqliteSink(config, deps);
  const source = sink.shipSource();
  expect(source.kind).toBe('sqlite');
  for (let n = 0; n < 3; n++) {
    await sink.deliver(sampleBatch(n, 2));
    jest.advanceTimersByTime(1_000);
  }
  await sink.deliver(sampleBatch(3, 2)); // open: not offered
  const files = await source.closedFiles();
  expect(files.map((f) => f.slice(dir.length + 1))).toEqual(['acct.20261205T040000000Z.sqlite', 'acct.20261205T040001000Z.sqlite', 'acct.20261205T040002000Z.sqlite']);

  await source.shipped(files[0], false);
  expect(existsSync(files[0])).toBe(false);
  await source.shipped(files[1], true);
  expect(existsSync(join(dir, 'shipped', 'acct.20261205T040001000Z.sqlite'))).toBe(true);
  expect(await source.closedFiles()).toEqual([files[2]]);
  await source.shipped(files[0], false); // repeated after a crash: nothing to do

  const openFile = join(dir, readdirSync(dir).find((f) => f.endsWith('.open.sqlite'))!);
  await expect(source.shipped(openFile, false)).rejects.toMatchObject({ code: 'SQLITE_SHIP_UNKNOWN_FILE' });
  await expect(source.shipped('/etc/passwd', false)).rejects.toMatchObject({ code: 'SQLITE_SHIP_UNKNOWN_FILE' });
  expect(existsSync(openFile)).toBe(true);
  await sink.close();
});

test('a batch whose lines do not match its events is refused whole, not retried forever; close() rejects later batches', async () => {
  const { config, deps } = setup();
  const sink = createSqliteSink(config, deps);
  const b = sampleBatch(0, 3);
  await expect(sink.deliver({ events: b.events, lines: b.lines.slice(1) })).rejects.toMatchObject({ code: 'SINK_BAD_BATCH' });
  await expect(sink.deliver({ events: b.events, lines: [b.lines[0], undefined as unknown as string, b.lines[2]] })).rejects.toMatchObject({ code: 'SINK_BAD_BATCH' });
  await sink.deliver(b); // the sink is still usable
  expect(sink.stats()).toMatchObject({ delivered: 1, retries: 0 });
  await sink.close();
  await expect(sink.deliver(b)).rejects.toMatchObject({ code: 'SINK_CLOSED' });
});

test('without a dir, files live under <persistent>/events/sqlite/<name>', async () => {
  const persistentPath = join(root, `p${seq++}`);
  const sink = createSqliteSink({ type: 'sqlite', name: 'billing', maxSize: 1024 ** 3, maxAgeMs: 3_600_000 }, { persistentPath, nodeId: 'n1', logger: pino({ level: 'silent' }) });
  await sink.deliver(sampleBatch(0, 2));
  await sink.close();
  const files = await sink.shipSource().closedFiles();
  expect(files).toHaveLength(1);
  expect(files[0]).toMatch(new RegExp(`^${persistentPath}/events/sqlite/billing/billing\\.\\d{8}T\\d{9}Z\\.sqlite$`));
});

test('node:sqlite loads without an ExperimentalWarning on the Node we pin (it would land in the MTA log)', () => {
  const result = spawnSync(process.execPath, ['-e', "new (require('node:sqlite').DatabaseSync)(':memory:').exec('SELECT 1')"], { encoding: 'utf8' });
  expect(result.status).toBe(0);
  expect(result.stderr).toBe('');
});

test('a full disk: the batch is retried until there is room, none of it lost or doubled; close() ends a retry with a rejection', async () => {
  const fs = mountTmpfs('volley-sqlite-full-', '2m');
  try {
    const dir = join(fs.mnt, 'acct');
    const log = captureLogger();
    const sink = createSqliteSink({ type: 'sqlite', name: 'acct', dir, maxSize: 1024 ** 3, maxAgeMs: 3_600_000 }, { persistentPath: fs.mnt, nodeId: 'n1', logger: log.logger });
    await sink.deliver(sampleBatch(0, 10));
    const filler = join(fs.mnt, 'filler');
    fillDisk(filler);
    let resolved = false;
    const pending = sink.deliver(sampleBatch(1, 500)).then(() => (resolved = true));
    await waitUntil(() => sink.stats().retries >= 2, 10_000, () => JSON.stringify(sink.stats()));
    expect(resolved).toBe(false);
    expect(sink.stats().lastError).toMatch(/full/i);
    expect(log.text()).toMatch(/writing a batch failed; retrying/);
    rmSync(filler);
    await pending;
    await sink.close();
    const rows = query(closed(dir)[0], 'SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events');
    expect(rows).toEqual([{ n: 510, d: 510 }]);

    // Full again, and the sink is closed while it waits to retry.
    const again = createSqliteSink({ type: 'sqlite', name: 'acct', dir, maxSize: 1024 ** 3, maxAgeMs: 3_600_000 }, { persistentPath: fs.mnt, nodeId: 'n1', logger: log.logger });
    fillDisk(filler);
    const stuck = again.deliver(sampleBatch(2, 500));
    await waitUntil(() => again.stats().retries >= 1, 10_000);
    await again.close();
    await expect(stuck).rejects.toMatchObject({ code: 'SINK_CLOSED' });
  } finally {
    await fs.release();
  }
});

/** Writes `file` until the filesystem has no room left. */
function fillDisk(file: string): void {
  const chunk = Buffer.alloc(64 * 1024, 1);
  const fd = openSync(file, 'w');
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  // The last bytes: a smaller write may still fit.
  const fd2 = openSync(file, 'a');
  try {
    for (;;) writeSync(fd2, Buffer.alloc(512, 1));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd2);
  }
}

test('files started in the same millisecond get distinct names, offered in the order they were written', async () => {
  fakeClock(Date.UTC(2026, 11, 5, 4, 0, 0));
  const { dir, config, deps } = setup({ maxSize: 1 }); // every batch fills a file
  const sink = createSqliteSink(config, deps);
  for (let n = 0; n < 12; n++) await sink.deliver(sampleBatch(n, 1));
  await sink.close();
  const files = await sink.shipSource().closedFiles();
  expect(files.map((f) => f.slice(dir.length + 1))).toEqual(['acct.20261205T040000000Z.sqlite', ...Array.from({ length: 11 }, (_, i) => `acct.20261205T040000000Z-${i + 1}.sqlite`)]);
  expect(files.map((f) => query(f, 'SELECT event_id FROM events')[0].event_id)).toEqual(Array.from({ length: 12 }, (_, n) => `b${n}-0`));
});
