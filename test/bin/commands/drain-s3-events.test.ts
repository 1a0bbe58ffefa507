// `volley drain` on a node whose events go to S3 (the s3 sink every deployed
// MTA has: stacks/event-shipping.ts), with real processes on 127.0.0.1: the
// bundled `volley mta` delivering to an smtp-sink, the loopback S3 server
// (test/helpers/s3-server.ts) and the bundled `volley drain`. The s3 sink
// ships closed event files only, and a file closes by size or after
// attempt_log.max_age (1h): the drain must not stop the MTA (and have the
// node retired) while its last events are still in open files on its disk;
// and a drain of an MTA that is not running (crashed, or stopped by hand)
// cannot wait for its events, so it looks on disk and stops (exit 10) while
// they are there. A SQLite accounting sink's open file (rotated by size or
// after 1h) is closed and shipped too once it holds every event: its rows are
// read back from the bucket with Debian's sqlite3.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import pino from 'pino';
import { eventsLeftOnDisk } from '../../../runtime/mta/drain/source/events-on-disk';
import { loadConfig } from '../../../runtime/shared/config/load';
import { ADMIN_AUTH, ADMIN_TOKEN, deliveryConfigYaml } from '../../helpers/config';
import { completeLines, eventLines, sinkCaughtUp, sqliteRows } from '../../helpers/events-e2e';
import { startMta, VOLLEY, type MtaProcess } from '../../helpers/mta-process';
import { getFreePort, runSmtpSource, startSmtpSink, type SmtpSinkHandle } from '../../helpers/postfix-tools';
import { newSecret, waitUntil } from '../../helpers/proxy-fixtures';
import { S3Server } from '../../helpers/s3-server';
import { tempDir } from '../../helpers/tmp';

const BUCKET = 'volley-events';
const KEY_ID = 'AKIAVOLLEYDRAIN';
const SECRET_KEY = 'drain-s3-secret-key';
const dir = tempDir('volley-drain-s3-');
let s3: S3Server;
let sink: SmtpSinkHandle;
/** Every MTA started here: crashed at the end if a failed test left one running. */
const mtas: MtaProcess[] = [];
async function startSource(config: string, pp: string): Promise<MtaProcess> {
  const m = await startMta({ configPath: config, persistentPath: pp, workers: 2, env: S3_ENV });
  mtas.push(m);
  return m;
}

beforeAll(async () => {
  s3 = await S3Server.start({ buckets: [BUCKET], credentials: { [KEY_ID]: { secretAccessKey: SECRET_KEY } } });
  sink = await startSmtpSink();
});
afterAll(async () => {
  for (const m of mtas) await m.crash();
  await sink?.stop();
  await s3?.close();
});

/** Every event line in this bucket's objects, by event_id. */
function eventIdsInS3(): Set<string> {
  const ids = new Set<string>();
  for (const [key, o] of s3.objects) {
    if (!key.includes('/events/')) continue;
    for (const line of completeLines(gunzipSync(o.body).toString('utf8'))) ids.add((JSON.parse(line) as { event_id: string }).event_id);
  }
  return ids;
}

/** A source node: messages to ok.test are delivered to the smtp-sink; events go to S3 (and to `moreSinks`, YAML list items). */
async function sourceNode(name: string, moreSinks = ''): Promise<{ config: string; pp: string; events: string; mta: MtaProcess }> {
  const home = join(dir, name);
  mkdirSync(home, { recursive: true });
  const config = join(home, 'volley.yaml');
  // attempt_log's max_age is left at its default (1h): the delivery events stay in open files unless the drain closes them.
  writeFileSync(
    config,
    deliveryConfigYaml(`routes:
  - { domain: ok.test, host: 127.0.0.1, port: ${sink.port} }
events:
  sinks:
    - { name: archive, type: s3, bucket: ${BUCKET}, prefix: volley, region: us-east-1, endpoint: "${s3.endpoint}", keep_local: true, interval: 300ms }
${moreSinks}`),
  );
  const pp = join(home, 'pp');
  return { config, pp, events: join(pp, 'log', 'events'), mta: await startSource(config, pp) };
}

const S3_ENV = { AWS_ACCESS_KEY_ID: KEY_ID, AWS_SECRET_ACCESS_KEY: SECRET_KEY, VOLLEY_ENV: 'test', AWS_EC2_METADATA_DISABLED: 'true' };

/** 20 messages delivered, and their events written. */
async function deliverSome(node: { events: string; mta: MtaProcess }): Promise<void> {
  const r = await runSmtpSource({ port: node.mta.smtpPort, messages: 20, sessions: 2, uniqueRecipients: true, from: 'news@shop.example', to: 'user@ok.test' });
  expect({ exit: r.exitCode, stderr: r.stderr }).toEqual({ exit: 0, stderr: '' });
  const queued = async (): Promise<number> => ((await (await fetch(`${node.mta.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as { queued: number }).queued;
  await waitUntil(async () => (await queued()) === 0, 30_000);
  await waitUntil(() => eventLines(node.events).size >= 20, 30_000);
}

/** `volley drain` of an empty queue (nothing is sent to the destination, a closed port: only the events matter); its exit code and stderr. */
async function drain(node: { config: string; pp: string; mta: MtaProcess }): Promise<{ code: number | null; stderr: string }> {
  const secretFile = join(dir, 'drain.secret');
  writeFileSync(secretFile, newSecret());
  const destination = `127.0.0.1:${await getFreePort()}`;
  const proc = spawn(
    process.execPath,
    [VOLLEY, 'drain', destination, '--config', node.config, '--persistent-path', node.pp, '--admin', node.mta.adminAddress, '--secret-file', secretFile, '--insecure-tls', '--json', '--max-event-wait', '60s'],
    { env: { ...process.env, VOLLEY_ADMIN_TOKEN: ADMIN_TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.stdout!.resume();
  const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
  return { code, stderr };
}

/** Event ids the node wrote (keep_local: all its files are still here) that S3 does not hold. */
function notInS3(events: string): string[] {
  const shipped = eventIdsInS3();
  return [...eventLines(events).keys()].filter((id) => !shipped.has(id));
}

test('the drain waits until S3 holds the node\'s last events (its open event files closed and shipped) before it stops the MTA; exit 0 means none is left behind', async () => {
  const node = await sourceNode('running');
  await deliverSome(node);
  const r = await drain(node);
  expect({ code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stderr: '' });
  await waitUntil(() => node.mta.proc.exitCode !== null || node.mta.proc.signalCode !== null, 30_000);
  expect(eventLines(node.events).size).toBeGreaterThanOrEqual(20);
  expect(notInS3(node.events)).toEqual([]);
  // Nothing was written after the hand-over: a rerun on this stopped MTA is not held back by its own events.
  expect(await eventsLeftOnDisk(node.pp, loadConfig(node.config).events.sinks, pino({ level: 'silent' }))).toEqual([]);
}, 180_000);

test('an MTA stopped by hand with events not in S3: the drain cannot wait for them, says so and exits 10; started again, the drain ships them and exits 0', async () => {
  const node = await sourceNode('stopped');
  await deliverSome(node);
  await node.mta.stop(); // as `systemctl stop volley-mta`: its last events are still in its open files
  expect(notInS3(node.events).length).toBeGreaterThan(0);
  const first = await drain(node);
  expect(first.code).toBe(10);
  expect(first.stderr).toContain('start the MTA so it delivers them');
  // Started again, the MTA is running: the drain waits for its events as usual.
  const again = await sourceNodeRestart(node);
  const second = await drain(again);
  expect({ code: second.code, stderr: second.code === 0 ? '' : second.stderr }).toEqual({ code: 0, stderr: '' });
  await waitUntil(() => again.mta.proc.exitCode !== null || again.mta.proc.signalCode !== null, 30_000);
  expect(notInS3(node.events)).toEqual([]);
}, 180_000);

/** Every row of the SQLite files in this bucket, read by sqlite3 from a gunzipped copy: event_id -> the file it came in. */
function sqliteRowsInS3(scratch: string): Map<string, string> {
  mkdirSync(scratch, { recursive: true });
  const rows = new Map<string, string>();
  for (const [key, o] of s3.objects) {
    if (!key.includes('/sqlite/')) continue;
    const copy = join(scratch, key.split('/').pop()!.replace(/\.gz$/, ''));
    writeFileSync(copy, gunzipSync(o.body));
    for (const r of sqliteRows(copy)) rows.set(r.event_id, key);
  }
  return rows;
}

test('a node with a SQLite accounting sink: the drain closes its open file once it holds every event and waits until S3 has it; the last file\'s rows are in the bucket', async () => {
  // max_age left at its default (1h): without the drain closing it, the file stays open until the node stops.
  const node = await sourceNode('sqlite', '    - { name: acct, type: sqlite }\n');
  await deliverSome(node);
  // The sink holds every event, in its one open file.
  await waitUntil(() => sinkCaughtUp(node.events, 'acct'), 30_000);
  const accounting = join(node.pp, 'events', 'sqlite', 'acct');
  expect(readdirSync(accounting).filter((f) => f.endsWith('.sqlite'))).toEqual([expect.stringMatching(/\.open\.sqlite$/)]);
  const r = await drain(node);
  expect({ code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stderr: '' });
  await waitUntil(() => node.mta.proc.exitCode !== null || node.mta.proc.signalCode !== null, 30_000);
  const written = [...eventLines(node.events).keys()];
  expect(written.length).toBeGreaterThanOrEqual(20);
  const inS3 = sqliteRowsInS3(join(dir, 'sqlite-scratch'));
  expect(written.filter((id) => !inS3.has(id))).toEqual([]);
}, 180_000);

async function sourceNodeRestart(node: { config: string; pp: string; events: string }): Promise<{ config: string; pp: string; events: string; mta: MtaProcess }> {
  return { ...node, mta: await startSource(node.config, node.pp) };
}
