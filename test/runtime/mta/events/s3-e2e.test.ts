// Acceptance of the s3 sink through a real MTA (issue 16): smtp-source
// injects mail delivered to an smtp-sink; the event log and an sqlite sink
// rotate small files; the s3 sink ships the closed ones to the loopback S3
// server (test/helpers/s3-server.ts: real SigV4 from the real SDK, path-style),
// with the credentials and VOLLEY_ENV in the MTA process's environment as an
// instance has them. Files arrive under
// `<prefix>/<env>/<node>/<kind>/yyyy/mm/dd/<file>.gz` and gunzip to the local
// file's bytes; without keep_local the local copy goes only once S3 holds it;
// an outage (503, then a refused port) delays and loses nothing; a wrong
// secret key deletes nothing and says why in GET /events/status.
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { ADMIN_AUTH, ADMIN_TOKEN, deliveryConfigYaml } from '../../../helpers/config';
import { addLine, completeLines, eventLines, sha256, sha256File, sinkCaughtUp, sqliteRows } from '../../../helpers/events-e2e';
import { startMta, VOLLEY, type MtaProcess } from '../../../helpers/mta-process';
import { getFreePort, runSmtpSource, startSmtpSink, type SmtpSinkHandle } from '../../../helpers/postfix-tools';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { S3Server } from '../../../helpers/s3-server';
import { tempDir } from '../../../helpers/tmp';
import { parseEventFile } from '../../../../runtime/mta/events/event-log';

const BUCKET = 'volley-archive';
const KEY_ID = 'AKIAVOLLEYACCEPT';
const SECRET = 'acceptance-secret-key';
const ENV = 'acceptance';
const exec = promisify(execFile);
const dir = tempDir('volley-s3-e2e-');
let s3: S3Server;
let accept: SmtpSinkHandle;
let mta: MtaProcess | undefined;

beforeAll(async () => {
  s3 = await S3Server.start({ buckets: [BUCKET], credentials: { [KEY_ID]: { secretAccessKey: SECRET } } });
  accept = await startSmtpSink();
});

afterEach(async () => {
  await mta?.stop();
  mta = undefined;
});

afterAll(async () => {
  await accept?.stop();
  await s3?.close();
});

/** A node's paths and config: small event-log and SQLite files, shipped every 300 ms. */
async function node(name: string, keepLocal: boolean): Promise<{ config: string; persistent: string; events: string; accounting: string }> {
  const home = join(dir, name);
  mkdirSync(home, { recursive: true });
  const closed = await getFreePort();
  const config = join(home, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`vmtas: [{ name: v1, ip: 127.0.0.1, helo: v1.test.example }]
pools: [{ name: p1, vmtas: [{ name: v1 }] }]
default_pool: p1
routes:
  - { domain: ok.test, host: 127.0.0.1, port: ${accept.port} }
  - { domain: "*", host: 127.0.0.1, port: ${closed} }
delivery: { retry: [1h] }
events:
  attempt_log: { max_size: 16KB, max_age: 1s }
  sinks:
    - { name: acct, type: sqlite, max_size: 96KB, max_age: 1s }
    - { name: archive, type: s3, bucket: ${BUCKET}, prefix: volley, region: us-east-1, endpoint: "${s3.endpoint}", keep_local: ${keepLocal}, interval: 300ms }
`),
  );
  const persistent = join(home, 'pp');
  return { config, persistent, events: join(persistent, 'log', 'events'), accounting: join(persistent, 'events', 'sqlite', 'acct') };
}

async function start(n: { config: string; persistent: string }, secret = SECRET): Promise<MtaProcess> {
  mta = await startMta({
    configPath: n.config,
    persistentPath: n.persistent,
    workers: 2,
    // What /etc/volley/instance.env and the instance role give a real node; no metadata service on loopback.
    env: { AWS_ACCESS_KEY_ID: KEY_ID, AWS_SECRET_ACCESS_KEY: secret, VOLLEY_ENV: ENV, AWS_EC2_METADATA_DISABLED: 'true' },
  });
  return mta;
}

let batch = 0;

/** Sends `n` messages to recipients unique across the file (smtp-source's -N numbers from 0 in every run: the run's tag tells them apart). */
async function send(n: number): Promise<void> {
  const r = await runSmtpSource({ port: mta!.smtpPort, messages: n, sessions: 4, uniqueRecipients: true, from: 'news@shop.example', to: `user-${++batch}@ok.test` });
  expect({ exit: r.exitCode, stderr: r.stderr }).toEqual({ exit: 0, stderr: '' });
}

interface Status {
  node: string;
  shipper?: { filesShipped: number; failures: number; lastError?: string; lastSuccess?: string; filesWaiting: number };
}

async function status(): Promise<Status> {
  return (await (await fetch(`${mta!.adminUrl}/events/status`, { headers: ADMIN_AUTH })).json()) as Status;
}

/** Closed event-log files (all but each producer's newest). */
function closedEventFiles(events: string): string[] {
  const byProducer = new Map<string, string[]>();
  for (const f of readdirSync(events).filter((n) => parseEventFile(n)).sort()) {
    const p = parseEventFile(f)!.producer;
    byProducer.set(p, [...(byProducer.get(p) ?? []), f]);
  }
  return [...byProducer.values()].flatMap((l) => l.slice(0, -1)).map((f) => join(events, f));
}

function closedSqlite(accounting: string): string[] {
  return readdirSync(accounting).filter((f) => /^acct\.\d{8}T\d{9}Z(-\d+)?\.sqlite$/.test(f)).map((f) => join(accounting, f));
}

function openSqlite(accounting: string): string[] {
  return readdirSync(accounting).filter((f) => f.endsWith('.open.sqlite')).map((f) => join(accounting, f));
}

const KEY_RE = /^volley\/acceptance\/([^/]+)\/(events|sqlite)\/(\d{4})\/(\d{2})\/(\d{2})\/([^/]+)\.gz$/;

/** This node's objects: kind, file name and the gunzipped bytes, checked against the key scheme on the way. */
function objects(nodeId: string): { key: string; kind: string; file: string; body: Buffer }[] {
  const out: { key: string; kind: string; file: string; body: Buffer }[] = [];
  for (const [id, o] of s3.objects) {
    const key = id.slice(BUCKET.length + 1);
    expect(key).toMatch(KEY_RE);
    const [, node, kind, yyyy, mm, dd, file] = KEY_RE.exec(key)!;
    if (node !== nodeId) continue;
    // Dated by the day the file was started, as its name says.
    expect(`${yyyy}${mm}${dd}`).toBe(/\.(\d{8})T/.exec(file)![1]);
    expect(o.contentType).toBe('application/gzip');
    const body = gunzipSync(o.body);
    expect(o.metadata['volley-source-sha256']).toBe(sha256(body));
    out.push({ key, kind, file, body });
  }
  return out;
}

function objectFor(nodeId: string, kind: 'events' | 'sqlite', file: string): Buffer | undefined {
  return objects(nodeId).find((o) => o.kind === kind && o.file === basename(file))?.body;
}

/** Whether S3 holds an object of this node and kind (by key only: cheap enough to poll). */
function holds(nodeId: string, kind: 'events' | 'sqlite'): boolean {
  return [...s3.objects.keys()].some((id) => id.startsWith(`${BUCKET}/volley/${ENV}/${nodeId}/${kind}/`));
}

function has(nodeId: string, kind: 'events' | 'sqlite', file: string): boolean {
  for (const id of s3.objects.keys()) if (id.startsWith(`${BUCKET}/volley/${ENV}/${nodeId}/${kind}/`) && id.endsWith(`/${basename(file)}.gz`)) return true;
  return false;
}

/** Log lines of the MTA that say a shipping round failed. */
function failedRounds(m: MtaProcess): number {
  return m.log().split('\n').filter((l) => l.includes('s3 shipping failed')).length;
}

test('keep_local: closed event-log and SQLite files arrive under <prefix>/<env>/<node>/<kind>/yyyy/mm/dd/<file>.gz and gunzip to the local bytes', async () => {
  const n = await node('kept', true);
  const m = await start(n);
  const nodeId = (await status()).node;
  await send(120);
  await new Promise<void>((r) => setTimeout(r, 1100)); // past max_age: the next writes close the event-log files they go to
  await send(60);
  const shippedDir = join(n.accounting, 'shipped');
  const done = () =>
    sinkCaughtUp(n.events, 'acct') &&
    openSqlite(n.accounting).length === 0 &&
    closedSqlite(n.accounting).length === 0 &&
    closedEventFiles(n.events).every((f) => has(nodeId, 'events', f));
  await waitUntil(done, 30_000, () => `sqlite open ${openSqlite(n.accounting).length}, closed unshipped ${closedSqlite(n.accounting).length}; objects ${s3.objects.size}`);

  const events = closedEventFiles(n.events);
  const sqlite = readdirSync(shippedDir).map((f) => join(shippedDir, f));
  expect(events.length).toBeGreaterThanOrEqual(2);
  expect(sqlite.length).toBeGreaterThanOrEqual(2);
  // Every closed file has its object, byte for byte once gunzipped, and no object is of anything else.
  for (const f of events) expect({ f, sha: sha256(objectFor(nodeId, 'events', f) ?? '') }).toEqual({ f, sha: sha256File(f) });
  for (const f of sqlite) expect({ f, sha: sha256(objectFor(nodeId, 'sqlite', f) ?? '') }).toEqual({ f, sha: sha256File(f) });
  expect(objects(nodeId).map((o) => `${o.kind}/${o.file}`).sort()).toEqual([...events.map((f) => `events/${basename(f)}`), ...sqlite.map((f) => `sqlite/${basename(f)}`)].sort());
  // The object is visible once its PUT completes; the shipper counts a file only after its HEAD check, a moment later.
  let st = await status();
  await waitUntil(async () => ((st = await status()).shipper?.filesShipped ?? 0) >= events.length + sqlite.length, 10_000, () => JSON.stringify(st.shipper));
  expect(st.shipper).toMatchObject({ failures: 0, filesShipped: events.length + sqlite.length });
  await m.stop();
  mta = undefined;
});

/** Every event, from the objects of this node and the files still on it; a line seen twice must be the same line. */
function everyLine(nodeId: string, events: string): Map<string, string> {
  const all = new Map<string, string>();
  const merge = (lines: string[], where: string) => {
    for (const line of lines) {
      const id = (JSON.parse(line) as { event_id: string }).event_id;
      if (all.has(id)) expect(all.get(id)).toBe(line);
      else addLine(all, line, where);
    }
  };
  for (const o of objects(nodeId)) if (o.kind === 'events') merge(completeLines(o.body.toString('utf8')), o.key);
  merge([...eventLines(events).values()], events);
  return all;
}

/** Every SQLite row, from the objects of this node (opened by sqlite3 from a copy) and the files still on it. */
function everyRow(nodeId: string, accounting: string, scratch: string): Map<string, string> {
  mkdirSync(scratch, { recursive: true });
  const rows = new Map<string, string>();
  const files = [...closedSqlite(accounting), ...openSqlite(accounting)];
  for (const o of objects(nodeId)) {
    if (o.kind !== 'sqlite') continue;
    const copy = join(scratch, o.file);
    writeFileSync(copy, o.body);
    files.push(copy);
  }
  for (const f of files) {
    for (const r of sqliteRows(f)) {
      expect({ f, dup: rows.has(r.event_id) }).toEqual({ f, dup: false });
      rows.set(r.event_id, r.json);
    }
  }
  return rows;
}

test('without keep_local: a file leaves the node only once S3 holds it; an outage (503, then a refused port) delays and loses nothing', async () => {
  const n = await node('moved', false);
  const m = await start(n);
  const nodeId = (await status()).node;
  await send(80);
  // Shipping works: files arrive and their local copies go.
  await waitUntil(() => holds(nodeId, 'events') && holds(nodeId, 'sqlite'), 30_000, () => `objects ${s3.objects.size}`);

  await s3.outage('unavailable');
  const failedBefore = failedRounds(m);
  await send(80);
  await new Promise<void>((r) => setTimeout(r, 1100)); // past max_age: the next writes close the event-log files they go to
  await send(40);
  // Closed files wait on the node while S3 answers 503 (and the shipper says so).
  const waiting = () => [...closedEventFiles(n.events), ...closedSqlite(n.accounting)];
  await waitUntil(
    () => failedRounds(m) >= failedBefore + 2 && closedEventFiles(n.events).length >= 2 && closedSqlite(n.accounting).length >= 1,
    30_000,
    () => `failed rounds ${failedRounds(m) - failedBefore}, waiting ${waiting().length}`,
  );
  expect(s3.requests.some((r) => r.status === 503)).toBe(true);
  const held = new Map(waiting().map((f) => [f, sha256File(f)]));
  // (One of them may be in S3 already: uploaded just before the outage, its verifying HEAD met the 503, so it stays.)
  const st = await status();
  expect(st.shipper!.failures).toBeGreaterThanOrEqual(2);
  expect(st.shipper!.lastError).toMatch(/reduce your request rate|ServiceUnavailable|503/i);

  // Then no route at all: connections refused.
  await s3.outage('refusing');
  const refusedBefore = failedRounds(m);
  await waitUntil(() => failedRounds(m) > refusedBefore, 30_000, () => `failed rounds ${failedRounds(m)}`);
  for (const f of held.keys()) expect({ f, sha: sha256File(f) }).toEqual({ f, sha: held.get(f) });

  await s3.restore();
  // Every held file arrives, byte for byte, and only then leaves the node.
  await waitUntil(() => [...held.keys()].every((f) => has(nodeId, f.endsWith('.sqlite') ? 'sqlite' : 'events', f)), 60_000, () => `${[...held.keys()].filter((f) => !has(nodeId, f.endsWith('.sqlite') ? 'sqlite' : 'events', f)).length} of ${held.size} not in S3`);
  for (const [f, sha] of held) expect({ f, sha: sha256(objectFor(nodeId, f.endsWith('.sqlite') ? 'sqlite' : 'events', f)!) }).toEqual({ f, sha });
  await waitUntil(() => waiting().every((f) => !held.has(f)), 30_000, () => `still local: ${waiting().filter((f) => held.has(f)).join(', ')}`);

  // Nothing lost: every delivery is a line, in S3 or still on the node, and a row of an SQLite file, in S3 or on the node.
  await waitUntil(() => sinkCaughtUp(n.events, 'acct') && openSqlite(n.accounting).length === 0 && closedSqlite(n.accounting).length === 0, 30_000, () => 'sqlite files not all shipped');
  const lines = everyLine(nodeId, n.events);
  const delivered = [...lines.values()].map((l) => JSON.parse(l) as { status: string; recipient: string }).filter((e) => e.status === 'delivered');
  expect(new Set(delivered.map((e) => e.recipient)).size).toBe(200);
  const rows = everyRow(nodeId, n.accounting, join(dir, 'moved-scratch'));
  expect([...rows.keys()].sort()).toEqual([...lines.keys()].sort());
  for (const [id, line] of lines) expect(rows.get(id)).toBe(line);
});

test('a wrong secret key: nothing is deleted, and GET /events/status says why; with the right key everything then arrives', async () => {
  const n = await node('wrong-key', false);
  let m = await start(n, 'not-the-secret');
  const nodeId = (await status()).node;
  await send(60);
  await new Promise<void>((r) => setTimeout(r, 1100)); // past max_age: the next writes close the event-log files they go to
  await send(60);
  const local = () => [...closedEventFiles(n.events), ...closedSqlite(n.accounting)];
  const failedBefore = failedRounds(m);
  await waitUntil(() => closedEventFiles(n.events).length >= 1 && closedSqlite(n.accounting).length >= 1 && failedRounds(m) >= failedBefore + 2, 30_000, () => `local ${local().length}, failed ${failedRounds(m)}`);
  const held = new Map(local().map((f) => [f, sha256File(f)]));
  // A round after the files were listed failed too: still all there, unchanged, and S3 holds nothing of this node.
  const later = failedRounds(m);
  await waitUntil(() => failedRounds(m) > later, 30_000);
  for (const [f, sha] of held) expect({ f, sha: sha256File(f) }).toEqual({ f, sha });
  expect(objects(nodeId)).toEqual([]);
  expect(s3.requests.some((r) => r.status === 403)).toBe(true);
  const st = await status();
  expect(st.shipper).toMatchObject({ filesShipped: 0 });
  expect(st.shipper!.failures).toBeGreaterThanOrEqual(1);
  expect(st.shipper!.lastError).toMatch(/signature/i);
  expect(st.shipper!.filesWaiting).toBeGreaterThanOrEqual(held.size);
  // The same in /metrics, and in what an operator runs.
  const metrics = await (await fetch(`${m.adminUrl}/metrics`)).text();
  expect(metrics).toMatch(/\nvolley_events_s3_failed_rounds\{sink="archive"\} [1-9]\d*\n/);
  expect(metrics).toMatch(/\nvolley_events_s3_files_shipped_total\{sink="archive"\} 0\n/);
  const cli = await exec(process.execPath, [VOLLEY, 'events', 'status', '--admin', m.adminAddress], { env: { ...process.env, VOLLEY_ADMIN_TOKEN: ADMIN_TOKEN } });
  expect(cli.stdout).toMatch(/^archive \(s3\): 0 files shipped \(0 bytes\), \d+ waiting, [1-9]\d* failed rounds in a row; last success never; last error: .*signature/im);

  await m.stop();
  m = await start(n);
  await waitUntil(() => [...held.keys()].every((f) => has(nodeId, f.endsWith('.sqlite') ? 'sqlite' : 'events', f)), 30_000, () => `objects ${s3.objects.size}`);
  for (const [f, sha] of held) expect({ f, sha: sha256(objectFor(nodeId, f.endsWith('.sqlite') ? 'sqlite' : 'events', f)!) }).toEqual({ f, sha });
});
