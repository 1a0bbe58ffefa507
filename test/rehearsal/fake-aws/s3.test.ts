// The fake S3 through the real SDK v3 S3 client, reached only through
// AWS_ENDPOINT_URL_S3 (path-style, as for any IP endpoint).
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { serve, type Endpoint } from './http';
import { FakeS3 } from './s3';
import { useEnv } from './env-for-test';

const s3 = new FakeS3();
let endpoint: Endpoint;
beforeAll(async () => {
  endpoint = await serve(s3.handler);
});
useEnv(() => ({ AWS_ENDPOINT_URL_S3: endpoint.url, AWS_ACCESS_KEY_ID: 'AKIAFAKE', AWS_SECRET_ACCESS_KEY: 'fake', AWS_SESSION_TOKEN: undefined, AWS_PROFILE: undefined }));
afterAll(() => endpoint.close());

it('stores what PutObject sends (a buffer, and a stream the SDK sends aws-chunked) and GetObject returns it', async () => {
  const client = new S3Client({ region: 'eu-west-1' });
  await client.send(new PutObjectCommand({ Bucket: 'volley-config', Key: 'dev/volley.yaml', Body: Buffer.from('version: 1\n') }));
  expect(s3.get('volley-config', 'dev/volley.yaml')?.toString()).toBe('version: 1\n');
  await client.send(new PutObjectCommand({ Bucket: 'volley-config', Key: 'dev/stream.yaml', Body: Readable.from([Buffer.from('a: 1\n'), Buffer.from('b: 2\n')]), ContentLength: 10 }));
  expect(s3.get('volley-config', 'dev/stream.yaml')?.toString()).toBe('a: 1\nb: 2\n');

  s3.put('volley-config', 'dev/seeded.yaml', 'seeded: true\n');
  const got = await client.send(new GetObjectCommand({ Bucket: 'volley-config', Key: 'dev/seeded.yaml' }));
  expect(await got.Body?.transformToString()).toBe('seeded: true\n');
  await expect(client.send(new GetObjectCommand({ Bucket: 'volley-config', Key: 'missing' }))).rejects.toMatchObject({ name: 'NoSuchKey' });
});

it('reports the SHA-256 a PutObject carried on a HEAD with ChecksumMode ENABLED (what the S3 shipper verifies), and refuses a wrong one', async () => {
  const client = new S3Client({ region: 'eu-west-1' });
  await client.send(new PutObjectCommand({ Bucket: 'volley-events', Key: 'mta/rehearsal/n1/events/x.gz', Body: Buffer.from('gz'), ChecksumAlgorithm: 'SHA256' }));
  const head = await client.send(new HeadObjectCommand({ Bucket: 'volley-events', Key: 'mta/rehearsal/n1/events/x.gz', ChecksumMode: 'ENABLED' }));
  expect(head).toMatchObject({ ContentLength: 2, ChecksumSHA256: createHash('sha256').update('gz').digest('base64') });
  await expect(
    client.send(new PutObjectCommand({ Bucket: 'volley-events', Key: 'bad', Body: Buffer.from('gz'), ChecksumSHA256: Buffer.alloc(32).toString('base64') })),
  ).rejects.toMatchObject({ name: 'BadDigest' });
});

it('holds an access key that has grants to them, as IAM holds a role to its S3 statements; keys without grants are not checked', async () => {
  // What the storage stack grants one MTA slot (grantShipping), and the assets bucket's read grant.
  s3.grant('ASIASLOTA', [
    { actions: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:GetObject'], resources: ['arn:aws:s3:::volley-events/mta/rehearsal/slot-a/*'] },
    { actions: ['s3:GetObject*', 's3:List*'], resources: ['arn:aws:s3:::assets', 'arn:aws:s3:::assets/*'] },
  ]);
  const slotA = new S3Client({ region: 'eu-west-1', credentials: { accessKeyId: 'ASIASLOTA', secretAccessKey: 'fake', sessionToken: 'token' } });
  await slotA.send(new PutObjectCommand({ Bucket: 'volley-events', Key: 'mta/rehearsal/slot-a/events/2026/12/05/w0.jsonl.gz', Body: Buffer.from('a') }));
  expect(s3.get('volley-events', 'mta/rehearsal/slot-a/events/2026/12/05/w0.jsonl.gz')?.toString()).toBe('a');
  await expect(slotA.send(new HeadObjectCommand({ Bucket: 'volley-events', Key: 'mta/rehearsal/slot-a/events/2026/12/05/w0.jsonl.gz' }))).resolves.toMatchObject({ ContentLength: 1 });
  // Another slot's prefix, the prefix itself without its slash, and a write to the assets bucket: refused, nothing stored.
  for (const [Bucket, Key] of [['volley-events', 'mta/rehearsal/slot-b/events/x.gz'], ['volley-events', 'mta/rehearsal/slot-ab/x.gz'], ['assets', 'runtime.zip']]) {
    await expect(slotA.send(new PutObjectCommand({ Bucket, Key, Body: Buffer.from('x') }))).rejects.toMatchObject({ name: 'AccessDenied' });
    expect(s3.get(Bucket, Key)).toBeUndefined();
  }
  s3.put('assets', 'runtime.zip', 'zip');
  const got = await slotA.send(new GetObjectCommand({ Bucket: 'assets', Key: 'runtime.zip' }));
  expect(await got.Body?.transformToString()).toBe('zip');
  await expect(slotA.send(new GetObjectCommand({ Bucket: 'volley-config', Key: 'dev/volley.yaml' }))).rejects.toMatchObject({ name: 'AccessDenied' });
  expect(s3.denied).toHaveLength(4);
  // The key of the tests above has no grants: unchecked.
  await new S3Client({ region: 'eu-west-1' }).send(new PutObjectCommand({ Bucket: 'anywhere', Key: 'x', Body: Buffer.from('y') }));
  expect(s3.get('anywhere', 'x')?.toString()).toBe('y');
});

it('writes conditionally as S3 does (the mirror arbiter\'s lease): If-None-Match: * only creates, If-Match replaces only the ETag named; a lost race is 412', async () => {
  const client = new S3Client({ region: 'eu-west-1' });
  const at = { Bucket: 'volley-events', Key: 'mirror/rehearsal/slot/lease.json' };
  const created = await client.send(new PutObjectCommand({ ...at, Body: 'v1', IfNoneMatch: '*' }));
  await expect(client.send(new PutObjectCommand({ ...at, Body: 'other', IfNoneMatch: '*' }))).rejects.toMatchObject({ name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } });
  const replaced = await client.send(new PutObjectCommand({ ...at, Body: 'v2', IfMatch: created.ETag }));
  // The ETag read before the replacement no longer matches.
  await expect(client.send(new PutObjectCommand({ ...at, Body: 'stale', IfMatch: created.ETag }))).rejects.toMatchObject({ name: 'PreconditionFailed' });
  await expect(client.send(new PutObjectCommand({ Bucket: 'volley-events', Key: 'absent', Body: 'x', IfMatch: replaced.ETag }))).rejects.toMatchObject({ name: 'PreconditionFailed' });
  expect(s3.get(at.Bucket, at.Key)?.toString()).toBe('v2');
  expect(s3.get('volley-events', 'absent')).toBeUndefined();
});
