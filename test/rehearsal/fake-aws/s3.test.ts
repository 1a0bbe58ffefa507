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
