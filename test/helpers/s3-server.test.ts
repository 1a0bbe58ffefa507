// The test S3 server refuses what S3 refuses: checked with AWS's own
// published SigV4 examples (independent of the SDK's signer), with the real
// SDK, and with requests altered after signing.
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type ServiceInputTypes,
  type ServiceOutputTypes,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { FinalizeRequestMiddleware } from '@smithy/types';
import { request } from 'node:http';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { S3Server } from './s3-server';
import { canonicalRequest, sha256Hex, signingKey, verifySigV4 } from './sigv4';
import { createHmac } from 'node:crypto';

// The example credentials of AWS's SigV4 documentation.
const DOC_KEY = 'AKIAIOSFODNN7EXAMPLE';
const DOC_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const DOC_TIME = Date.UTC(2013, 4, 24);

function send(s3: S3Server, method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: s3.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('SigV4, from AWS\'s published examples', () => {
  test('GET Object (header auth): the documented signature verifies, one changed header does not', () => {
    const headers = {
      host: 'examplebucket.s3.amazonaws.com',
      range: 'bytes=0-9',
      'x-amz-content-sha256': sha256Hex(''),
      'x-amz-date': '20130524T000000Z',
      authorization:
        'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
    };
    const keys = new Map([[DOC_KEY, { secretAccessKey: DOC_SECRET }]]);
    expect(verifySigV4({ method: 'GET', url: '/test.txt', headers }, keys, DOC_TIME).accessKeyId).toBe(DOC_KEY);
    expect(() => verifySigV4({ method: 'GET', url: '/test.txt', headers: { ...headers, range: 'bytes=0-10' } }, keys, DOC_TIME)).toThrow(/signature we calculated does not match/);
    expect(() => verifySigV4({ method: 'GET', url: '/test.txt', headers }, new Map([[DOC_KEY, { secretAccessKey: 'other' }]]), DOC_TIME)).toThrow(/does not match/);
    expect(() => verifySigV4({ method: 'GET', url: '/test.txt', headers }, keys, DOC_TIME + 16 * 60_000)).toThrow(/more than 15 minutes/);
  });

  test('a chunk-signed upload (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) as documented is stored; a changed chunk is refused', async () => {
    const s3 = await S3Server.start({ buckets: ['examplebucket'], credentials: { [DOC_KEY]: { secretAccessKey: DOC_SECRET } }, now: () => DOC_TIME });
    try {
      const chunk = (data: Buffer, signature: string) => Buffer.concat([Buffer.from(`${data.length.toString(16)};chunk-signature=${signature}\r\n`), data, Buffer.from('\r\n')]);
      const body = (first: Buffer) =>
        Buffer.concat([
          chunk(first, 'ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648'),
          chunk(Buffer.alloc(1024, 'a'), '0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497'),
          chunk(Buffer.alloc(0), 'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9'),
        ]);
      const headers = {
        host: 's3.amazonaws.com',
        'x-amz-date': '20130524T000000Z',
        'x-amz-storage-class': 'REDUCED_REDUNDANCY',
        authorization:
          'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9',
        'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
        'content-encoding': 'aws-chunked',
        'x-amz-decoded-content-length': '66560',
        'content-length': '66824',
      };
      const good = body(Buffer.alloc(65536, 'a'));
      expect(good.length).toBe(66824);
      expect(await send(s3, 'PUT', '/examplebucket/chunkObject.txt', headers, good)).toMatchObject({ status: 200 });
      expect(s3.object('examplebucket', 'chunkObject.txt')?.body.equals(Buffer.alloc(66560, 'a'))).toBe(true);
      const bad = body(Buffer.alloc(65536, 'b'));
      const refused = await send(s3, 'PUT', '/examplebucket/other.txt', headers, bad);
      expect(refused.status).toBe(403);
      expect(refused.text).toContain('<Code>SignatureDoesNotMatch</Code>');
      expect(s3.object('examplebucket', 'other.txt')).toBeUndefined();
    } finally {
      await s3.close();
    }
  });
});

describe('with the real SDK', () => {
  let s3: S3Server;
  let client: S3Client;
  beforeAll(async () => {
    s3 = await S3Server.start({ buckets: ['b'], credentials: { AKIATEST: { secretAccessKey: 'right' } } });
    client = new S3Client({ region: 'eu-west-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: 'AKIATEST', secretAccessKey: 'right' }, maxAttempts: 1 });
  });
  afterAll(async () => {
    client.destroy();
    await s3.close();
  });

  const failure = (p: Promise<unknown>) => p.then(() => 'accepted', (e: { name: string; $metadata?: { httpStatusCode?: number } }) => `${e.$metadata?.httpStatusCode} ${e.name}`);

  test('stores a buffer (signed payload), a stream (aws-chunked with a trailing CRC32), a key with spaces; lists and returns them', async () => {
    await client.send(new PutObjectCommand({ Bucket: 'b', Key: 'dir/a file+1.txt', Body: Buffer.from('hello'), ChecksumAlgorithm: 'SHA256' }));
    await client.send(new PutObjectCommand({ Bucket: 'b', Key: 'dir/stream', Body: Readable.from([Buffer.from('ab'), Buffer.from('cd')]), ContentLength: 4 }));
    expect(s3.requests.slice(-2).map((r) => r.payload)).toEqual([sha256Hex('hello'), 'STREAMING-UNSIGNED-PAYLOAD-TRAILER']);
    expect(s3.object('b', 'dir/stream')?.body.toString()).toBe('abcd');
    const got = await client.send(new GetObjectCommand({ Bucket: 'b', Key: 'dir/a file+1.txt' }));
    expect(await got.Body?.transformToString()).toBe('hello');
    const listed = await client.send(new ListObjectsV2Command({ Bucket: 'b', Prefix: 'dir/' }));
    expect(listed.Contents?.map((c) => c.Key)).toEqual(['dir/a file+1.txt', 'dir/stream']);
  });

  test('refuses a wrong secret, an unknown key, a missing bucket, a skewed clock', async () => {
    const other = (secret: string, id = 'AKIATEST') => new S3Client({ region: 'eu-west-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: id, secretAccessKey: secret }, maxAttempts: 1 });
    const put = (c: S3Client, bucket = 'b') => failure(c.send(new PutObjectCommand({ Bucket: bucket, Key: 'k', Body: 'x' })));
    const wrong = other('wrong');
    const unknown = other('right', 'AKIAUNKNOWN');
    expect(await put(wrong)).toBe('403 SignatureDoesNotMatch');
    expect(await put(unknown)).toBe('403 InvalidAccessKeyId');
    expect(await put(client, 'nope')).toBe('404 NoSuchBucket');
    const skewed = await S3Server.start({ buckets: ['b'], credentials: { AKIATEST: { secretAccessKey: 'right' } }, now: () => Date.now() + 3_600_000 });
    const toSkewed = new S3Client({ region: 'eu-west-1', endpoint: skewed.endpoint, forcePathStyle: true, credentials: { accessKeyId: 'AKIATEST', secretAccessKey: 'right' }, maxAttempts: 1, systemClockOffset: 0 });
    // The SDK corrects its clock from the server's Date header and retries; one attempt shows the refusal.
    expect(await put(toSkewed)).toBe('403 RequestTimeTooSkewed');
    for (const c of [wrong, unknown, toSkewed]) c.destroy();
    await skewed.close();
    expect(s3.object('b', 'k')).toBeUndefined();
  });

  test('refuses a body changed after signing, a signed header changed after signing, and a checksum that does not match', async () => {
    const tampered = (change: (r: { headers: Record<string, string>; body: unknown }) => void, relation: 'before' | 'after') => {
      const c = new S3Client({ region: 'eu-west-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: 'AKIATEST', secretAccessKey: 'right' }, maxAttempts: 1 });
      const middleware: FinalizeRequestMiddleware<ServiceInputTypes, ServiceOutputTypes> = (next) => async (args) => {
        change(args.request as { headers: Record<string, string>; body: unknown });
        return next(args);
      };
      c.middlewareStack.addRelativeTo(
        middleware,
        { relation, toMiddleware: 'httpSigningMiddleware', name: `tamper-${relation}` },
      );
      return c;
    };
    const put = (c: S3Client) => failure(c.send(new PutObjectCommand({ Bucket: 'b', Key: 'tampered', Body: Buffer.from('original'), ChecksumAlgorithm: 'SHA256' })));
    const body = tampered((r) => (r.body = Buffer.from('changed!')), 'after');
    const header = tampered((r) => (r.headers['x-amz-meta-who'] = 'mallory'), 'after');
    const checksum = tampered((r) => (r.headers['x-amz-checksum-sha256'] = Buffer.alloc(32).toString('base64')), 'before');
    expect(await put(body)).toBe('400 XAmzContentSHA256Mismatch');
    expect(await put(header)).toBe('403 AccessDenied');
    expect(await put(checksum)).toBe('400 BadDigest');
    for (const c of [body, header, checksum]) c.destroy();
    expect(s3.object('b', 'tampered')).toBeUndefined();
  });

  test('a wrong trailing checksum in an aws-chunked body is BadDigest', async () => {
    const data = Buffer.from('abcd');
    const crc = (b: Buffer) => {
      const out = Buffer.alloc(4);
      out.writeUInt32BE(crc32(b));
      return out.toString('base64');
    };
    const signedPut = (trailer: string) => {
      const amzDate = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
      const headers: Record<string, string> = {
        host: `127.0.0.1:${s3.port}`,
        'content-encoding': 'aws-chunked',
        'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
        'x-amz-date': amzDate,
        'x-amz-decoded-content-length': '4',
        'x-amz-trailer': 'x-amz-checksum-crc32',
      };
      const signed = Object.keys(headers).sort();
      const scope = `${amzDate.slice(0, 8)}/eu-west-1/s3/aws4_request`;
      const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest({ method: 'PUT', url: '/b/trailer', headers }, signed, headers['x-amz-content-sha256']))].join('\n');
      const signature = createHmac('sha256', signingKey('right', amzDate.slice(0, 8), 'eu-west-1', 's3')).update(toSign).digest('hex');
      headers.authorization = `AWS4-HMAC-SHA256 Credential=AKIATEST/${scope}, SignedHeaders=${signed.join(';')}, Signature=${signature}`;
      return send(s3, 'PUT', '/b/trailer', headers, Buffer.from(`4\r\nabcd\r\n0\r\nx-amz-checksum-crc32:${trailer}\r\n\r\n`));
    };
    const wrong = await signedPut(crc(Buffer.from('abce')));
    expect(wrong.status).toBe(400);
    expect(wrong.text).toContain('<Code>BadDigest</Code>');
    expect(s3.object('b', 'trailer')).toBeUndefined();
    expect((await signedPut(crc(data))).status).toBe(200);
    expect(s3.object('b', 'trailer')?.body.toString()).toBe('abcd');
  });

  test('multipart: a part under 5 MiB other than the last is EntityTooSmall; parts must be listed as uploaded', async () => {
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: 'b', Key: 'mp', ChecksumAlgorithm: 'SHA256' }));
    const parts: { PartNumber: number; ETag?: string; ChecksumSHA256?: string }[] = [];
    for (const PartNumber of [1, 2]) {
      const r = await client.send(new UploadPartCommand({ Bucket: 'b', Key: 'mp', UploadId, PartNumber, Body: Buffer.from(`part ${PartNumber}`), ChecksumAlgorithm: 'SHA256' }));
      parts.push({ PartNumber, ETag: r.ETag, ChecksumSHA256: r.ChecksumSHA256 });
    }
    const complete = (Parts: typeof parts) => failure(client.send(new CompleteMultipartUploadCommand({ Bucket: 'b', Key: 'mp', UploadId, MultipartUpload: { Parts } })));
    expect(await complete([{ ...parts[0], ETag: '"0"' }, parts[1]])).toBe('400 InvalidPart');
    expect(await complete(parts)).toBe('400 EntityTooSmall');
    expect(await complete([parts[1]])).toBe('accepted');
    expect(s3.object('b', 'mp')?.body.toString()).toBe('part 2');
  });

  test('an outage answers 503, or refuses connections, until restored', async () => {
    const put = () => failure(client.send(new PutObjectCommand({ Bucket: 'b', Key: 'o', Body: 'x' })));
    await s3.outage('unavailable');
    expect(await put()).toBe('503 ServiceUnavailable');
    await s3.restore();
    await s3.outage('refusing');
    // A kept-alive connection is cut (socket hang up); a new one is refused.
    await expect(client.send(new PutObjectCommand({ Bucket: 'b', Key: 'o', Body: 'x' }))).rejects.toThrow();
    await expect(
      new Promise((resolve, reject) => {
        const socket = connect(s3.port, '127.0.0.1', () => resolve(socket.destroy()));
        socket.on('error', reject);
      }),
    ).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await s3.restore();
    expect(await put()).toBe('accepted');
  });
});
