// A drained node's inbound reports, end to end: a real `volley mta` with an
// inbound listener and an s3 sink (the loopback S3 server), driven through its
// admin API the way `volley drain` drives it (POST /drain/stop, the event wait
// on GET /events/status, POST /node/stop). Once the drain has stopped intake,
// the hand-over closes the node's event files and ships them, and the node is
// then retired: a DSN taken after that would go into an event file nothing
// ships. So the listener answers 451 (its sender sends it again, to another
// MX) until a resume, and the stopped node leaves no event behind on its disk.
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import pino from 'pino';
import { eventsLeftOnDisk } from '../../../../runtime/mta/drain/source/events-on-disk';
import { loadConfig } from '../../../../runtime/shared/config/load';
import { ADMIN_AUTH, deliveryConfigYaml } from '../../../helpers/config';
import { completeLines, eventLines } from '../../../helpers/events-e2e';
import { startMta, type MtaProcess } from '../../../helpers/mta-process';
import { getFreePort } from '../../../helpers/postfix-tools';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { S3Server } from '../../../helpers/s3-server';
import { SmtpDialog } from '../../../helpers/smtp-dialog';
import { tempDir } from '../../../helpers/tmp';

const BUCKET = 'volley-events';
const KEY_ID = 'AKIAVOLLEYINBOUND';
const SECRET_KEY = 'drain-inbound-secret-key';
const S3_ENV = { AWS_ACCESS_KEY_ID: KEY_ID, AWS_SECRET_ACCESS_KEY: SECRET_KEY, VOLLEY_ENV: 'test', AWS_EC2_METADATA_DISABLED: 'true' };
const dir = tempDir('volley-drain-inbound-');
let s3: S3Server;
let mta: MtaProcess | undefined;

beforeAll(async () => {
  s3 = await S3Server.start({ buckets: [BUCKET], credentials: { [KEY_ID]: { secretAccessKey: SECRET_KEY } } });
});
afterAll(async () => {
  await mta?.crash();
  await s3?.close();
});

/** An Exim DSN quoting X-Volley-Id: mapped by header to one bounce event, no lookup needed. */
const DSN = readFileSync(join(__dirname, '../../../fixtures/reports/exim-dsn.eml'), 'latin1');

/** Sends the DSN to the inbound listener as a receiving MTA would; the reply that ended the transaction. */
async function report(port: number): Promise<{ code: number; text: string }> {
  const s = await SmtpDialog.open(port);
  expect((await s.reply()).code).toBe(220);
  expect((await s.command('EHLO mx.dest.example')).code).toBe(250);
  const r = await s.transaction('', ['bounces@bounces.shop.example'], DSN.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..'));
  await s.quit();
  return { code: r.code, text: r.text };
}

async function admin(method: string, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${mta!.adminUrl}${path}`, { method, headers: ADMIN_AUTH });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

/** What `volley drain` does first: stop intake and delivery until nothing is in flight (the hand-over runs then). */
async function drainStop(): Promise<void> {
  await waitUntil(async () => (await admin('POST', '/drain/stop')).body.inflight === 0, 30_000);
}

/** The drain's event wait: nothing unread by a sink, no closed file S3 lacks. */
async function eventsOut(): Promise<void> {
  let last = '';
  await waitUntil(async () => {
    const st = (await admin('GET', '/events/status')).body as { shipper?: { unshipped?: number } };
    last = JSON.stringify(st.shipper);
    return st.shipper?.unshipped === 0;
  }, 30_000, () => last);
}

/** Every bounce event id in this bucket's event files. */
function bouncesInS3(): Set<string> {
  const ids = new Set<string>();
  for (const [key, o] of s3.objects) {
    if (!key.includes('/events/')) continue;
    for (const line of completeLines(gunzipSync(o.body).toString('utf8'))) {
      const e = JSON.parse(line) as { event_id: string; event: string };
      if (e.event === 'bounce') ids.add(e.event_id);
    }
  }
  return ids;
}

test('after the drain stopped intake, a DSN is answered 451 and written nowhere; after a resume it is taken and its event shipped at the next hand-over; the stopped node leaves no event on its disk', async () => {
  const home = join(dir, 'node');
  mkdirSync(home, { recursive: true });
  const inboundPort = await getFreePort();
  const config = join(home, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: 9 }]
inbound: { address: 127.0.0.1, port: ${inboundPort}, domains: [bounces.shop.example] }
events:
  sinks:
    - { name: archive, type: s3, bucket: ${BUCKET}, prefix: volley, region: us-east-1, endpoint: "${s3.endpoint}", keep_local: true, interval: 300ms }
`),
  );
  const pp = join(home, 'pp');
  const events = join(pp, 'log', 'events');
  const unmatched = join(pp, 'inbound', 'unmatched');
  const bounces = (): string[] => [...eventLines(events).values()].filter((l) => (JSON.parse(l) as { event: string }).event === 'bounce');
  mta = await startMta({ configPath: config, persistentPath: pp, workers: 1, env: S3_ENV });

  await drainStop();
  const refused = await report(inboundPort);
  expect(refused).toEqual({ code: 451, text: expect.stringContaining('being drained') });
  expect(bounces()).toEqual([]);
  expect(existsSync(unmatched) ? readdirSync(unmatched) : []).toEqual([]);

  // The drain gave up (exit 10) and resumed the node: reports are taken again.
  await admin('POST', '/drain/resume');
  expect((await report(inboundPort)).code).toBe(250);
  await waitUntil(() => bounces().length === 1, 10_000);
  const taken = (JSON.parse(bounces()[0]) as { event_id: string }).event_id;

  // A drain that runs to the end: the report taken before it reaches S3; one after it is refused.
  await drainStop();
  await eventsOut();
  expect((await report(inboundPort)).code).toBe(451);
  await eventsOut();
  expect(bouncesInS3()).toEqual(new Set([taken]));
  await admin('POST', '/node/stop');
  await waitUntil(() => mta!.proc.exitCode !== null || mta!.proc.signalCode !== null, 30_000);
  expect(bounces()).toHaveLength(1);
  expect(await eventsLeftOnDisk(pp, loadConfig(config).events.sinks, pino({ level: 'silent' }))).toEqual([]);
}, 120_000);
