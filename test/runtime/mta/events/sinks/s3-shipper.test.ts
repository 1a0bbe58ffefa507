// The S3 shipper against a real S3-compatible server on loopback
// (test/helpers/s3-server.ts), through the real SDK with real SigV4: closed
// files land under the key scheme, gzipped, with checksums S3 verified;
// large files go multipart; a file is let go only once S3 holds it; an
// outage or a wrong key delays and loses nothing.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { S3SinkConfig } from '../../../../../runtime/shared/config/events';
import { createS3Shipper, MAX_BACKOFF_MS, PART_SIZE, type S3ShipperDeps } from '../../../../../runtime/mta/events/sinks/s3-shipper';
import type { ShipSource } from '../../../../../runtime/mta/events/types';
import { captureLogger, waitUntil } from '../../../../helpers/proxy-fixtures';
import { S3Server } from '../../../../helpers/s3-server';
import { tempDir } from '../../../../helpers/tmp';

const BUCKET = 'volley-test-events';
const KEY_ID = 'AKIAVOLLEYTEST';
const SECRET = 'test-secret-key';
const root = tempDir('volley-s3-shipper-');
let s3: S3Server;
let n = 0;

beforeAll(async () => {
  s3 = await S3Server.start({ buckets: [BUCKET], credentials: { [KEY_ID]: { secretAccessKey: SECRET } } });
});
afterAll(() => s3.close());

interface ShippedCall {
  file: string;
  keepLocal: boolean;
  /** Whether the server held the object, with the file's gzipped bytes, when shipped() was called. */
  objectWasThere: boolean;
}

/** A ShipSource over a directory, as the event log and the SQLite sink offer theirs: closed files oldest first; shipped() deletes unless keepLocal. */
function dirSource(kind: 'events' | 'sqlite', dir: string, expectKey: (file: string) => string): ShipSource & { calls: ShippedCall[] } {
  mkdirSync(dir, { recursive: true });
  const calls: ShippedCall[] = [];
  return {
    kind,
    calls,
    async closedFiles() {
      return readdirSync(dir)
        .filter((f) => !f.includes('current'))
        .sort()
        .map((f) => join(dir, f));
    },
    async shipped(file, keepLocal) {
      calls.push({ file, keepLocal, objectWasThere: s3.object(BUCKET, expectKey(file)) !== undefined });
      if (!keepLocal) rmSync(file);
    },
  };
}

function config(over: Partial<S3SinkConfig> = {}): S3SinkConfig {
  return { type: 's3', name: 'archive', bucket: BUCKET, prefix: 'logs', endpoint: s3.endpoint, gzip: true, keepLocal: false, ship: ['events', 'sqlite'], intervalMs: 30_000, ...over };
}

function deps(sources: ShipSource[], over: Partial<S3ShipperDeps> = {}): S3ShipperDeps & { logs: ReturnType<typeof captureLogger> } {
  const logs = captureLogger();
  return {
    persistentPath: join(root, `persistent-${++n}`),
    nodeId: 'prod-mta-us-east-1a-1',
    env: 'prod',
    logger: logs.logger,
    sources,
    client: { credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET }, maxAttempts: 1 },
    processEnv: { AWS_REGION: 'us-east-1' },
    logs,
    ...over,
  };
}

const sha256 = (b: Buffer, enc: 'hex' | 'base64' = 'hex') => createHash('sha256').update(b).digest(enc);

test('closed files arrive under <prefix>/<env>/<node>/<kind>/yyyy/mm/dd/<file>.gz, gunzip to the file, with a checksum S3 verified; only then are they let go', async () => {
  const dir = join(root, 'events-1');
  const source = dirSource('events', dir, (f) => `logs/prod/prod-mta-us-east-1a-1/events/2026/12/04/${f.split('/').pop()}.gz`);
  const files = {
    'w0.2026-12-04T23-59-58-001Z.jsonl': Buffer.from('{"event":"delivery","event_id":"a"}\n{"event":"delivery","event_id":"b"}\n'),
    'w1.2026-12-04T10-00-00-000Z.jsonl': Buffer.from('{"event":"bounce","event_id":"c"}\n'),
  };
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), body);
  writeFileSync(join(dir, 'w0.current.jsonl'), 'still being written\n');
  const d = deps([source]);
  const shipper = createS3Shipper(config(), d);
  await shipper.shipNow();

  for (const [name, body] of Object.entries(files)) {
    const key = `logs/prod/prod-mta-us-east-1a-1/events/2026/12/04/${name}.gz`;
    const object = s3.object(BUCKET, key);
    expect(object).toBeDefined();
    expect(gunzipSync(object!.body)).toEqual(body);
    // The checksum the server computed over what it received and stored, as the SDK declared it.
    expect(object!.checksum).toEqual({ algorithm: 'sha256', value: sha256(object!.body, 'base64'), type: 'FULL_OBJECT' });
    expect(object!.contentType).toBe('application/gzip');
    expect(object!.contentEncoding).toBeUndefined();
    expect(object!.metadata).toEqual({ 'volley-source-sha256': sha256(body), 'volley-source-size': String(body.length) });
    expect(existsSync(join(dir, name))).toBe(false);
  }
  expect(source.calls.map((c) => [c.file.split('/').pop(), c.keepLocal, c.objectWasThere])).toEqual([
    ['w0.2026-12-04T23-59-58-001Z.jsonl', false, true],
    ['w1.2026-12-04T10-00-00-000Z.jsonl', false, true],
  ]);
  // Uploaded, then checked with a HEAD, before the file was let go.
  const ops = s3.requests.filter((r) => r.key?.includes('w1.2026-12-04')).map((r) => r.operation);
  expect(ops).toEqual(['PutObject', 'HeadObject']);
  expect(existsSync(join(dir, 'w0.current.jsonl'))).toBe(true);
  expect(shipper.stats()).toMatchObject({ filesShipped: 2, filesWaiting: 0, failures: 0, bytesShipped: Object.keys(files).reduce((sum, name) => sum + s3.object(BUCKET, `logs/prod/prod-mta-us-east-1a-1/events/2026/12/04/${name}.gz`)!.body.length, 0) });
  expect(shipper.stats().lastSuccess).toBeDefined();
  await shipper.close();
});

test('a file larger than a part goes as a multipart upload; its composite checksum is verified before the file goes', async () => {
  const dir = join(root, 'sqlite-big');
  const name = 'archive.2026-12-05T01-00-00-000Z.sqlite';
  const key = `logs/prod/prod-mta-us-east-1a-1/sqlite/2026/12/05/${name}`;
  const source = dirSource('sqlite', dir, () => key);
  // Random bytes do not compress: gzip off here anyway, the file itself is the body.
  const body = randomBytes(PART_SIZE + 1024 * 1024);
  writeFileSync(join(dir, name), body);
  const shipper = createS3Shipper(config({ gzip: false }), deps([source]));
  await shipper.shipNow();

  const object = s3.object(BUCKET, key);
  expect(object?.body.equals(body)).toBe(true);
  expect(object?.contentType).toBe('application/vnd.sqlite3');
  const parts = [body.subarray(0, PART_SIZE), body.subarray(PART_SIZE)].map((p) => createHash('sha256').update(p).digest());
  expect(object?.checksum).toEqual({ algorithm: 'sha256', value: `${createHash('sha256').update(Buffer.concat(parts)).digest('base64')}-2`, type: 'COMPOSITE' });
  expect(s3.requests.filter((r) => r.key === key).map((r) => r.operation)).toEqual(['CreateMultipartUpload', 'UploadPart', 'UploadPart', 'CompleteMultipartUpload', 'HeadObject']);
  expect(source.calls).toEqual([{ file: join(dir, name), keepLocal: false, objectWasThere: true }]);
  expect(existsSync(join(dir, name))).toBe(false);
  await shipper.close();
});

test('an S3 outage (503, then a refused port) delays shipping and loses nothing: the files stay until S3 has them', async () => {
  const dir = join(root, 'events-outage');
  const name = 'w0.2026-12-05T02-00-00-000Z.jsonl';
  const key = `logs/prod/prod-mta-us-east-1a-1/events/2026/12/05/${name}.gz`;
  const source = dirSource('events', dir, () => key);
  writeFileSync(join(dir, name), '{"event":"delivery"}\n');
  const d = deps([source]);
  const shipper = createS3Shipper(config(), d);
  try {
    await s3.outage('unavailable');
    await shipper.shipNow();
    expect(shipper.stats()).toMatchObject({ filesShipped: 0, filesWaiting: 1, failures: 1 });
    expect(shipper.stats().lastError).toMatch(/reduce your request rate|ServiceUnavailable/);
    await s3.restore();
    await s3.outage('refusing');
    await shipper.shipNow();
    expect(shipper.stats()).toMatchObject({ filesShipped: 0, filesWaiting: 1, failures: 2 });
    expect(shipper.stats().lastError).toMatch(/ECONNREFUSED/);
    expect(source.calls).toEqual([]);
    expect(existsSync(join(dir, name))).toBe(true);
    expect(s3.object(BUCKET, key)).toBeUndefined();
    // Staged gzip copies of failed attempts are not left behind.
    expect(readdirSync(join(d.persistentPath, 'events', 's3-staging'))).toEqual([]);
    expect(d.logs.text()).toContain('nothing deleted, retrying later');
  } finally {
    await s3.restore();
  }
  await shipper.shipNow();
  expect(gunzipSync(s3.object(BUCKET, key)!.body).toString()).toBe('{"event":"delivery"}\n');
  expect(source.calls).toEqual([{ file: join(dir, name), keepLocal: false, objectWasThere: true }]);
  expect(shipper.stats()).toMatchObject({ filesShipped: 1, filesWaiting: 0, failures: 0 });
  await shipper.close();
});

test('a wrong secret key is refused by S3 (403 SignatureDoesNotMatch) and nothing is deleted', async () => {
  const dir = join(root, 'events-badkey');
  const name = 'w0.2026-12-05T03-00-00-000Z.jsonl';
  const source = dirSource('events', dir, () => '');
  writeFileSync(join(dir, name), '{"event":"delivery"}\n');
  const before = s3.requests.length;
  const shipper = createS3Shipper(config(), deps([source], { client: { credentials: { accessKeyId: KEY_ID, secretAccessKey: 'not-the-secret' }, maxAttempts: 1 } }));
  await shipper.shipNow();
  expect(s3.requests.slice(before).map((r) => [r.operation, r.status])).toEqual([['PutObject', 403]]);
  expect(shipper.stats().lastError).toMatch(/signature we calculated does not match/);
  expect(source.calls).toEqual([]);
  expect(existsSync(join(dir, name))).toBe(true);
  await shipper.close();
});

test('keep_local is passed to the source; ship: [events] leaves SQLite files alone; a name without a date is dated by its mtime (UTC)', async () => {
  const events = dirSource('events', join(root, 'keep-events'), () => 'logs/prod/prod-mta-us-east-1a-1/events/2026/11/30/primary.log.gz');
  const sqlite = dirSource('sqlite', join(root, 'keep-sqlite'), () => '');
  const undated = join(root, 'keep-events', 'primary.log');
  writeFileSync(undated, '{"event":"complaint"}\n');
  const mtime = new Date(Date.UTC(2026, 10, 30, 23, 30));
  utimesSync(undated, mtime, mtime);
  writeFileSync(join(root, 'keep-sqlite', 'a.2026-12-05T00-00-00-000Z.sqlite'), 'SQLite format 3\0');
  const shipper = createS3Shipper(config({ keepLocal: true, ship: ['events'] }), deps([events, sqlite]));
  const before = s3.requests.length;
  await shipper.shipNow();
  expect(events.calls).toEqual([{ file: undated, keepLocal: true, objectWasThere: true }]);
  expect(existsSync(undated)).toBe(true);
  expect(sqlite.calls).toEqual([]);
  expect(s3.requests.slice(before).map((r) => r.key)).toEqual(['logs/prod/prod-mta-us-east-1a-1/events/2026/11/30/primary.log.gz', 'logs/prod/prod-mta-us-east-1a-1/events/2026/11/30/primary.log.gz']);
  await shipper.close();
});

test('a file that cannot be shipped for a reason of its own (its key taken, unreadable) stays on disk and the files after it still go', async () => {
  const name = 'a.2026-12-05T04-00-00-000Z.sqlite';
  const keyOf = (f: string) => `logs/prod/prod-mta-us-east-1a-1/sqlite/2026/12/05/${f.split('/').pop()}.gz`;
  const one = dirSource('sqlite', join(root, 'dup-1'), keyOf);
  const two = dirSource('sqlite', join(root, 'dup-2'), keyOf);
  writeFileSync(join(root, 'dup-1', name), 'first');
  writeFileSync(join(root, 'dup-2', name), 'second');
  // A directory where a file was offered: reading it fails (EISDIR), as an unreadable file would.
  mkdirSync(join(root, 'dup-2', 'b.2026-12-05T04-30-00-000Z.sqlite'));
  writeFileSync(join(root, 'dup-2', 'c.2026-12-05T05-00-00-000Z.sqlite'), 'third');
  const d = deps([one, two]);
  const shipper = createS3Shipper(config(), d);
  await shipper.shipNow();
  expect(gunzipSync(s3.object(BUCKET, keyOf(name))!.body).toString()).toBe('first');
  expect(two.calls.map((c) => c.file)).toEqual([join(root, 'dup-2', 'c.2026-12-05T05-00-00-000Z.sqlite')]);
  expect(existsSync(join(root, 'dup-2', name))).toBe(true);
  expect(shipper.stats()).toMatchObject({ filesShipped: 2, failures: 0 });
  expect(shipper.stats().lastError).toContain('EISDIR');
  expect(d.logs.text()).toContain('would both be');
  await shipper.close();
});

test('rounds repeat every interval; after failures the wait doubles (jittered), capped, and returns to the interval after a success', async () => {
  const timers: { ms: number; fire: () => void }[] = [];
  let failing = true;
  let looks = 0;
  const source: ShipSource = {
    kind: 'events',
    closedFiles: async () => {
      looks += 1;
      if (failing) throw new Error('disk unreadable');
      return [];
    },
    shipped: async () => undefined,
  };
  const jitter = [1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
  const shipper = createS3Shipper(config({ intervalMs: 60_000 }), deps([source], {
    random: () => jitter.shift() ?? 1,
    setTimer: (fire, ms) => {
      timers.push({ ms, fire });
      return () => undefined;
    },
  }));
  shipper.start();
  const next = async (count: number) => {
    await waitUntil(() => timers.length === count, 5_000, () => `${timers.length} timers`);
    return timers[count - 1].ms;
  };
  expect(await next(1)).toBe(120_000); // failed once: 2 x interval (jitter 1)
  timers[0].fire();
  expect(await next(2)).toBe(120_000); // failed twice: 4 x interval, jitter 0 halves it
  for (let i = 3; i <= 6; i++) {
    timers[i - 2].fire();
    await next(i);
  }
  expect(timers.map((t) => t.ms).slice(2)).toEqual([480_000, MAX_BACKOFF_MS, MAX_BACKOFF_MS, MAX_BACKOFF_MS]);
  failing = false;
  timers[5].fire();
  expect(await next(7)).toBe(60_000);
  expect(looks).toBe(7);
  expect(shipper.stats().failures).toBe(0);
  await shipper.close();
  timers[6].fire();
  expect(looks).toBe(7);
});

test('an object S3 reports differently from what was sent (size or checksum) is not trusted: the file stays', async () => {
  const dir = join(root, 'events-verify');
  const name = 'w0.2026-12-05T05-00-00-000Z.jsonl';
  const key = `logs/prod/prod-mta-us-east-1a-1/events/2026/12/05/${name}.gz`;
  const source = dirSource('events', dir, () => key);
  writeFileSync(join(dir, name), '{"event":"delivery","event_id":"v"}\n');
  // What S3 ends up holding is not what was sent (one byte flipped), with a checksum true to what it holds.
  s3.onStore = (_bucket, _key, object) => {
    const body = Buffer.from(object.body);
    body[body.length - 1] ^= 0xff;
    return { ...object, body, checksum: { algorithm: 'sha256', value: sha256(body, 'base64'), type: 'FULL_OBJECT' } };
  };
  const shipper = createS3Shipper(config(), deps([source]));
  try {
    await shipper.shipNow();
  } finally {
    s3.onStore = undefined;
  }
  expect(shipper.stats()).toMatchObject({ filesShipped: 0, failures: 1 });
  expect(shipper.stats().lastError).toContain(`s3://${BUCKET}/${key}: S3 reports`);
  expect(source.calls).toEqual([]);
  expect(existsSync(join(dir, name))).toBe(true);
  // The next round ships it again, and this time S3 holds what was sent.
  await shipper.shipNow();
  expect(source.calls).toEqual([{ file: join(dir, name), keepLocal: false, objectWasThere: true }]);
  await shipper.close();
});

test('a node without an environment name, or without a region, is refused at creation with a code', () => {
  expect(() => createS3Shipper(config(), deps([], { env: '' }))).toThrow(expect.objectContaining({ code: 'ES3KEY' }));
  expect(() => createS3Shipper(config({ region: undefined }), deps([], { processEnv: {} }))).toThrow(expect.objectContaining({ code: 'ES3REGION' }));
  expect(() => createS3Shipper(config({ region: undefined }), deps([], { processEnv: { VOLLEY_REGION: 'eu-west-1' } })).close()).not.toThrow();
});

test('a file its source removed after listing it is skipped; the others still ship', async () => {
  const dir = join(root, 'events-vanished');
  const name = 'w0.2026-12-05T06-00-00-000Z.jsonl';
  const source = dirSource('events', dir, (f) => `logs/prod/prod-mta-us-east-1a-1/events/2026/12/05/${f.split('/').pop()}.gz`);
  writeFileSync(join(dir, name), '{"event":"delivery"}\n');
  const listed = source.closedFiles;
  source.closedFiles = async () => [join(dir, 'w0.2026-12-05T05-30-00-000Z.jsonl'), ...(await listed())];
  const shipper = createS3Shipper(config(), deps([source]));
  await shipper.shipNow();
  expect(source.calls).toEqual([{ file: join(dir, name), keepLocal: false, objectWasThere: true }]);
  expect(shipper.stats()).toMatchObject({ filesShipped: 1, filesWaiting: 0, failures: 0 });
  await shipper.close();
});

test('close() while S3 holds a request unanswered ends the round at once; the file stays and nothing is left staged', async () => {
  const dir = join(root, 'events-hang');
  const name = 'w0.2026-12-05T07-00-00-000Z.jsonl';
  const source = dirSource('events', dir, () => '');
  writeFileSync(join(dir, name), '{"event":"delivery"}\n');
  const d = deps([source]);
  const shipper = createS3Shipper(config(), d);
  await s3.outage('hanging');
  try {
    const round = shipper.shipNow();
    await waitUntil(() => s3.held.length === 1);
    await shipper.close();
    await round;
  } finally {
    await s3.restore();
  }
  expect(source.calls).toEqual([]);
  expect(existsSync(join(dir, name))).toBe(true);
  expect(readdirSync(join(d.persistentPath, 'events', 's3-staging'))).toEqual([]);
  expect(shipper.stats()).toMatchObject({ filesShipped: 0, filesWaiting: 1 });
});

test('edge sizes ship and verify: exactly one part, and an empty file (gzip off)', async () => {
  const dir = join(root, 'edges');
  const keyOf = (f: string) => `logs/prod/prod-mta-us-east-1a-1/events/2026/12/05/${f.split('/').pop()}`;
  const source = dirSource('events', dir, keyOf);
  const exact = randomBytes(PART_SIZE);
  writeFileSync(join(dir, 'w0.2026-12-05T08-00-00-000Z.jsonl'), exact);
  writeFileSync(join(dir, 'w1.2026-12-05T08-00-00-000Z.jsonl'), '');
  const shipper = createS3Shipper(config({ gzip: false }), deps([source]));
  await shipper.shipNow();
  expect(shipper.stats()).toMatchObject({ filesShipped: 2, failures: 0 });
  expect(s3.object(BUCKET, keyOf('w0.2026-12-05T08-00-00-000Z.jsonl'))?.body.equals(exact)).toBe(true);
  expect(s3.object(BUCKET, keyOf('w1.2026-12-05T08-00-00-000Z.jsonl'))?.body.length).toBe(0);
  expect(source.calls.map((c) => c.objectWasThere)).toEqual([true, true]);
  await shipper.close();
});
