// The S3 arbiter against a mocked client: reads take the object's ETag, a
// missing object is no lease, writes are conditional (If-None-Match: * to
// create, If-Match on the version read), and S3's answers to a lost race
// (412, 409) are ELEASECONFLICT while other failures are EARBITER. Then the
// same against the S3-compatible test server, over signed HTTP.
import { GetObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { S3Arbiter } from '../../../runtime/mirror/arbiter-s3';
import { serializeLease } from '../../../runtime/mirror/arbiter';
import { S3Server } from '../../helpers/s3-server';

const s3 = mockClient(S3Client);
afterEach(() => s3.reset());

const arbiter = (): S3Arbiter => new S3Arbiter({ bucket: 'b', key: 'mirror/lease.json', region: 'eu-west-1', client: { credentials: { accessKeyId: 'k', secretAccessKey: 's' } } });
const failure = (name: string, status: number): S3ServiceException => new S3ServiceException({ name, $fault: 'client', $metadata: { httpStatusCode: status }, message: name });

test('reads the lease and its ETag; a missing object is no lease', async () => {
  const lease = { holder: 'a', epoch: 3, expires_at: Date.parse('2026-12-05T08:00:00Z') };
  s3.on(GetObjectCommand).resolvesOnce({ ETag: '"e1"', Body: { transformToString: async () => serializeLease(lease) } as never }).rejectsOnce(failure('NoSuchKey', 404));
  expect(await arbiter().read()).toEqual({ lease, etag: '"e1"' });
  expect(await arbiter().read()).toEqual({});
  expect(s3.commandCalls(GetObjectCommand)[0].args[0].input).toEqual({ Bucket: 'b', Key: 'mirror/lease.json' });
});

test('writes are conditional: If-None-Match * to create, If-Match on the version read', async () => {
  s3.on(PutObjectCommand).resolves({ ETag: '"e2"' });
  const a = arbiter();
  const lease = { holder: 'a', epoch: 1, expires_at: 5_000 };
  expect(await a.write(lease, undefined)).toBe('"e2"');
  expect(await a.write(lease, '"e1"')).toBe('"e2"');
  const [create, swap] = s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input);
  expect(create).toMatchObject({ Bucket: 'b', Key: 'mirror/lease.json', IfNoneMatch: '*', Body: serializeLease(lease) });
  expect(create.IfMatch).toBeUndefined();
  expect(swap).toMatchObject({ IfMatch: '"e1"' });
  expect(swap.IfNoneMatch).toBeUndefined();
});

test('a lost race (412 PreconditionFailed, 409 ConditionalRequestConflict) is ELEASECONFLICT; anything else EARBITER', async () => {
  const lease = { holder: 'a', epoch: 1, expires_at: 5_000 };
  s3.on(PutObjectCommand).rejectsOnce(failure('PreconditionFailed', 412)).rejectsOnce(failure('ConditionalRequestConflict', 409)).rejectsOnce(failure('AccessDenied', 403));
  await expect(arbiter().write(lease, '"e1"')).rejects.toMatchObject({ code: 'ELEASECONFLICT' });
  await expect(arbiter().write(lease, undefined)).rejects.toMatchObject({ code: 'ELEASECONFLICT' });
  await expect(arbiter().write(lease, '"e1"')).rejects.toMatchObject({ code: 'EARBITER' });
  s3.on(GetObjectCommand).rejects(failure('AccessDenied', 403));
  await expect(arbiter().read()).rejects.toMatchObject({ code: 'EARBITER' });
});

describe('against the S3-compatible test server (signed requests, conditional PutObject)', () => {
  let server: S3Server;
  beforeAll(async () => {
    server = await S3Server.start({ buckets: ['b'], credentials: { AKIATEST: { secretAccessKey: 'right' } } });
  });
  afterAll(() => server.close());

  test('create once, swap on the version read, and of two writers on one version exactly one wins', async () => {
    s3.restore();
    const real = (): S3Arbiter => new S3Arbiter({ bucket: 'b', key: 'pair-1/lease.json', region: 'eu-west-1', endpoint: server.endpoint, client: { credentials: { accessKeyId: 'AKIATEST', secretAccessKey: 'right' } } });
    const a = real();
    const b = real();
    try {
      expect(await a.read()).toEqual({});
      const v1 = await a.write({ holder: 'a', epoch: 1, expires_at: 1_000 }, undefined);
      await expect(b.write({ holder: 'b', epoch: 1, expires_at: 1_000 }, undefined)).rejects.toMatchObject({ code: 'ELEASECONFLICT' });
      expect(await b.read()).toEqual({ lease: { holder: 'a', epoch: 1, expires_at: 1_000 }, etag: v1 });
      const results = await Promise.allSettled([a.write({ holder: 'a', epoch: 1, expires_at: 2_000 }, v1), b.write({ holder: 'b', epoch: 2, expires_at: 2_000 }, v1)]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason).toMatchObject({ code: 'ELEASECONFLICT' });
      await expect(a.write({ holder: 'a', epoch: 1, expires_at: 3_000 }, v1)).rejects.toMatchObject({ code: 'ELEASECONFLICT' });
    } finally {
      a.close();
      b.close();
    }
  });
});
