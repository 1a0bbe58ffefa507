// Acceptance of the SQLite sink through a real MTA (issue 16): smtp-source
// injects a few hundred messages, delivered to an smtp-sink, refused with 550
// by another smtp-sink, or deferred (a route to a closed port); the sqlite
// sink rotates small files by size and age. Debian's sqlite3 then reads every
// accounting file: its rows are the event-log lines of the same run, by
// event_id, every line with a row and every row with a line (the open file
// too); a closed file's sha256 does not change over a further run with more
// rotations, nor over a stop and a restart of the MTA.
//
// The event log keeps its default rotation (100MB, 1h) here: retention deletes
// closed event-log files once the sink has read them, and the lines are what
// the rows are compared with.
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deliveryConfigYaml } from '../../../helpers/config';
import { eventLines, sha256File, sinkCaughtUp, sqliteRows, sqliteValue } from '../../../helpers/events-e2e';
import { startMta, type MtaProcess } from '../../../helpers/mta-process';
import { getFreePort, runSmtpSource, startSmtpSink, type SmtpSinkHandle } from '../../../helpers/postfix-tools';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir('volley-sqlite-e2e-');
const persistent = join(dir, 'pp');
const events = join(persistent, 'log', 'events');
const accounting = join(persistent, 'events', 'sqlite', 'acct');
let accept: SmtpSinkHandle;
let refuse: SmtpSinkHandle;
let mta: MtaProcess | undefined;
let config: string;

const CLOSED_RE = /^acct\.\d{8}T\d{9}Z(-\d+)?\.sqlite$/;
const OPEN_RE = /^acct\.\d{8}T\d{9}Z(-\d+)?\.open\.sqlite$/;

function files(re: RegExp): string[] {
  return readdirSync(accounting).filter((f) => re.test(f)).sort().map((f) => join(accounting, f));
}

beforeAll(async () => {
  accept = await startSmtpSink();
  // -f RCPT: every recipient is refused with a hard 550.
  refuse = await startSmtpSink({ extraArgs: ['-f', 'RCPT'] });
  // Nothing listens here: delivery to it fails to connect and is deferred.
  const closed = await getFreePort();
  config = join(dir, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`vmtas: [{ name: v1, ip: 127.0.0.1, helo: v1.test.example }]
pools: [{ name: p1, vmtas: [{ name: v1 }] }]
default_pool: p1
routes:
  - { domain: ok.test, host: 127.0.0.1, port: ${accept.port} }
  - { domain: bad.test, host: 127.0.0.1, port: ${refuse.port} }
  - { domain: "*", host: 127.0.0.1, port: ${closed} }
delivery: { retry: [1h] }
events:
  sinks:
    # Small files: an open file's schema is a few pages (its readers' indexes come at the close), so a file holds a few dozen rows; idle ones close after 2 s.
    - { name: acct, type: sqlite, max_size: 16KB, max_age: 2s }
`),
  );
  mta = await startMta({ configPath: config, persistentPath: persistent, workers: 2 });
});

afterAll(async () => {
  await mta?.stop();
  await accept?.stop();
  await refuse?.stop();
});

/** Sends `n` messages to unique recipients at `domain`; smtp-source's exit 0 means the MTA took every one. */
async function send(n: number, domain: string): Promise<void> {
  const r = await runSmtpSource({ port: mta!.smtpPort, messages: n, sessions: 4, uniqueRecipients: true, from: 'news@shop.example', to: `user@${domain}` });
  expect({ exit: r.exitCode, stderr: r.stderr }).toEqual({ exit: 0, stderr: '' });
}

/** Waits until the log holds `total` lines and the sink has acknowledged all of them. */
async function settle(total: number): Promise<Map<string, string>> {
  await waitUntil(() => eventLines(events).size >= total && sinkCaughtUp(events, 'acct'), 60_000, () => `${eventLines(events).size} of ${total} lines; cursor caught up: ${sinkCaughtUp(events, 'acct')}`);
  const lines = eventLines(events);
  // One attempt per recipient and nothing else (the deferred ones wait an hour): a line more would be unexplained.
  expect(lines.size).toBe(total);
  return lines;
}

/** Every row of every accounting file in the directory (closed and open), by event_id; no event_id twice across files. */
function allRows(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const f of [...files(CLOSED_RE), ...files(OPEN_RE)]) {
    for (const r of sqliteRows(f)) {
      expect({ file: f, dup: rows.has(r.event_id) }).toEqual({ file: f, dup: false });
      rows.set(r.event_id, r.json);
    }
  }
  return rows;
}

/** Rows and lines are the same set of events, each row holding its line exactly. */
function expectRowsEqualLines(lines: Map<string, string>): void {
  const rows = allRows();
  expect([...rows.keys()].sort()).toEqual([...lines.keys()].sort());
  for (const [id, line] of lines) expect(rows.get(id)).toBe(line);
}

const hashes = new Map<string, string>();

test('a run of delivered, failed and deferred mail: every event-log line is one row of the accounting files, and every row a line', async () => {
  // One run at a time, each taken by the sink before the next: at least a
  // batch each, so at least three rotations by size however fast the
  // machine is (sent at once, the sink's 200 ms batches could take them all in two).
  await send(150, 'ok.test');
  await settle(150);
  await send(60, 'bad.test');
  await settle(210);
  await send(60, 'down.test');
  const lines = await settle(270);
  const parsed = [...lines.values()].map((l) => JSON.parse(l) as { status: string; recipient: string });
  const count = (status: string, domain: string) => parsed.filter((e) => e.status === status && e.recipient.endsWith(`@${domain}`)).length;
  expect([count('delivered', 'ok.test'), count('failed', 'bad.test'), count('deferred', 'down.test'), lines.size]).toEqual([150, 60, 60, 270]);
  expect(accept.messages()).toBe(150);

  // Several files closed by size: each complete (WAL checkpointed, out of WAL mode) and alone (no -wal, -shm beside it).
  const closed = files(CLOSED_RE);
  expect(closed.length).toBeGreaterThanOrEqual(3);
  for (const f of closed) expect(sqliteValue(f, 'PRAGMA journal_mode')).toBe('delete');
  expect(readdirSync(accounting).filter((f) => /-(wal|shm)$/.test(f) && !f.includes('.open.'))).toEqual([]);
  expectRowsEqualLines(lines);
  // The indexed columns say the same as the line.
  const statusOf = new Map<string, string | null>();
  for (const f of [...closed, ...files(OPEN_RE)]) for (const r of sqliteRows(f)) statusOf.set(r.event_id, r.status);
  for (const [id, line] of lines) expect(statusOf.get(id)).toBe((JSON.parse(line) as { status: string }).status);
  for (const f of closed) hashes.set(f, sha256File(f));
});

test('a closed file is never written again: the same sha256 after a further run with more rotations', async () => {
  const before = files(CLOSED_RE).length;
  await send(120, 'ok.test');
  await settle(390);
  await send(30, 'bad.test');
  const lines = await settle(420);
  // Let the idle file pass its age so the run's last rows are in a closed file too.
  await waitUntil(() => files(OPEN_RE).length === 0, 20_000, () => `open: ${files(OPEN_RE).join(', ')}`);
  expect(files(CLOSED_RE).length).toBeGreaterThan(before + 1);
  expectRowsEqualLines(lines);
  for (const [f, h] of hashes) expect({ f, h: sha256File(f) }).toEqual({ f, h });
});

test('and across a stop and a restart: the stop closes the open file, the next process writes new files only', async () => {
  await send(20, 'ok.test');
  await settle(440);
  for (const f of files(CLOSED_RE)) if (!hashes.has(f)) hashes.set(f, sha256File(f));
  await mta!.stop();
  mta = undefined;
  // Stopped: nothing open; every row is in a closed file.
  expect(files(OPEN_RE)).toEqual([]);
  expectRowsEqualLines(eventLines(events));
  for (const f of files(CLOSED_RE)) if (!hashes.has(f)) hashes.set(f, sha256File(f));

  mta = await startMta({ configPath: config, persistentPath: persistent, workers: 2 });
  await Promise.all([send(60, 'ok.test'), send(20, 'bad.test')]);
  await settle(520);
  await mta.stop();
  mta = undefined;
  expect(files(OPEN_RE)).toEqual([]);
  expect(files(CLOSED_RE).length).toBeGreaterThan(hashes.size);
  expectRowsEqualLines(eventLines(events));
  for (const [f, h] of hashes) expect({ f, h: sha256File(f) }).toEqual({ f, h });
});
