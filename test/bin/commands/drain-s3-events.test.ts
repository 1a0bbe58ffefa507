// `volley drain` on a node whose events go to S3 (the s3 sink every deployed
// MTA has: stacks/event-shipping.ts), with real processes on 127.0.0.1: the
// bundled `volley mta` delivering to an smtp-sink, the loopback S3 server
// (test/helpers/s3-server.ts) and the bundled `volley drain`. The s3 sink
// ships closed event files only, and a file closes by size or after
// attempt_log.max_age (1h): the drain must not stop the MTA (and have the
// node retired) while its last events are still in open files on its disk.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ADMIN_AUTH, ADMIN_TOKEN, deliveryConfigYaml } from '../../helpers/config';
import { completeLines, eventLines } from '../../helpers/events-e2e';
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
let mta: MtaProcess | undefined;

beforeAll(async () => {
  s3 = await S3Server.start({ buckets: [BUCKET], credentials: { [KEY_ID]: { secretAccessKey: SECRET_KEY } } });
  sink = await startSmtpSink();
});
afterAll(async () => {
  await mta?.crash();
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

test('the drain waits until S3 holds the node\'s last events (its open event files closed and shipped) before it stops the MTA; exit 0 means none is left behind', async () => {
  const config = join(dir, 'volley.yaml');
  // attempt_log's max_age is left at its default (1h): the delivery events below stay in open files unless the drain closes them.
  writeFileSync(
    config,
    deliveryConfigYaml(`routes:
  - { domain: ok.test, host: 127.0.0.1, port: ${sink.port} }
events:
  sinks:
    - { name: archive, type: s3, bucket: ${BUCKET}, prefix: volley, region: us-east-1, endpoint: "${s3.endpoint}", keep_local: true, interval: 300ms }
`),
  );
  const pp = join(dir, 'pp');
  mkdirSync(pp, { recursive: true });
  mta = await startMta({
    configPath: config,
    persistentPath: pp,
    workers: 2,
    env: { AWS_ACCESS_KEY_ID: KEY_ID, AWS_SECRET_ACCESS_KEY: SECRET_KEY, VOLLEY_ENV: 'test', AWS_EC2_METADATA_DISABLED: 'true' },
  });
  const r = await runSmtpSource({ port: mta.smtpPort, messages: 20, sessions: 2, uniqueRecipients: true, from: 'news@shop.example', to: 'user@ok.test' });
  expect({ exit: r.exitCode, stderr: r.stderr }).toEqual({ exit: 0, stderr: '' });
  const queued = async (): Promise<number> => ((await (await fetch(`${mta!.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as { queued: number }).queued;
  await waitUntil(async () => (await queued()) === 0, 30_000);
  const events = join(pp, 'log', 'events');
  await waitUntil(() => eventLines(events).size >= 20, 30_000);

  const secretFile = join(dir, 'drain.secret');
  writeFileSync(secretFile, newSecret());
  // The queue is empty: nothing is sent to the destination (a closed port), only the events matter.
  const destination = `127.0.0.1:${await getFreePort()}`;
  const proc = spawn(
    process.execPath,
    [VOLLEY, 'drain', destination, '--config', config, '--persistent-path', pp, '--admin', mta.adminAddress, '--secret-file', secretFile, '--insecure-tls', '--json', '--max-event-wait', '60s'],
    { env: { ...process.env, VOLLEY_ADMIN_TOKEN: ADMIN_TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.stdout!.resume();
  const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
  expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' });
  await waitUntil(() => mta!.proc.exitCode !== null || mta!.proc.signalCode !== null, 30_000);

  // Every event the node wrote (keep_local: all its files are still here) is in S3.
  const written = [...eventLines(events).keys()];
  const shipped = eventIdsInS3();
  expect(written.length).toBeGreaterThanOrEqual(20);
  expect(written.filter((id) => !shipped.has(id))).toEqual([]);
}, 180_000);
