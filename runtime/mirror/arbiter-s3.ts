// The S3 arbiter: the lease is one object; S3's conditional writes make the
// compare-and-swap (PutObject with If-Match on the ETag read, or
// If-None-Match: * to create it only if absent). S3 answers a lost race with
// 412 PreconditionFailed (or 409 ConditionalRequestConflict when two
// conditional writes to the key overlap): both are ELEASECONFLICT here.
import { GetObjectCommand, PutObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { VolleyError } from '../shared/errors';
import { leaseConflict, parseLease, serializeLease, type Arbiter, type Lease, type LeaseRead } from './arbiter';

export interface S3ArbiterOptions {
  bucket: string;
  key: string;
  region?: string;
  endpoint?: string;
  /** Tests pass credentials or a client config; production uses the instance's role. */
  client?: Partial<S3ClientConfig>;
  /** Each request's bound: a lease renewal that hangs must fail well before the lease expires. */
  requestTimeoutMs?: number;
}

interface S3Failure {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

export class S3Arbiter implements Arbiter {
  readonly where: string;
  private readonly client: S3Client;

  constructor(private readonly o: S3ArbiterOptions) {
    this.where = `s3://${o.bucket}/${o.key}`;
    const region = o.region ?? o.client?.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? process.env.VOLLEY_REGION;
    if (!region) throw new VolleyError('ES3REGION', `arbiter ${this.where}: no region (set arbiter.s3.region, or AWS_REGION)`);
    const timeout = o.requestTimeoutMs ?? 2_000;
    this.client = new S3Client({
      region,
      ...(o.endpoint ? { endpoint: o.endpoint, forcePathStyle: true } : {}),
      requestHandler: { connectionTimeout: timeout, requestTimeout: timeout },
      // A retry after the lease could have expired is worse than an error: the keeper retries on its own schedule.
      maxAttempts: 1,
      ...o.client,
    });
  }

  async read(): Promise<LeaseRead> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.o.bucket, Key: this.o.key }));
      const text = r.Body ? await r.Body.transformToString('utf8') : '';
      if (!r.ETag) throw new VolleyError('EARBITER', `${this.where}: S3 answered without an ETag`);
      return { lease: parseLease(text, this.where), etag: r.ETag };
    } catch (err) {
      const f = err as S3Failure;
      if (f.name === 'NoSuchKey' || f.Code === 'NoSuchKey' || f.$metadata?.httpStatusCode === 404) return {};
      if (err instanceof VolleyError) throw err;
      throw new VolleyError('EARBITER', `cannot read the lease at ${this.where}: ${(err as Error).message}`, { cause: err });
    }
  }

  async write(lease: Lease, ifMatch: string | undefined): Promise<string> {
    try {
      const r = await this.client.send(
        new PutObjectCommand({
          Bucket: this.o.bucket,
          Key: this.o.key,
          Body: serializeLease(lease),
          ContentType: 'application/json',
          ...(ifMatch === undefined ? { IfNoneMatch: '*' } : { IfMatch: ifMatch }),
        }),
      );
      if (!r.ETag) throw new VolleyError('EARBITER', `${this.where}: S3 answered the write without an ETag`);
      return r.ETag;
    } catch (err) {
      const f = err as S3Failure;
      const status = f.$metadata?.httpStatusCode;
      if (status === 412 || status === 409 || f.name === 'PreconditionFailed' || f.name === 'ConditionalRequestConflict') throw leaseConflict(this.where);
      if (err instanceof VolleyError) throw err;
      throw new VolleyError('EARBITER', `cannot write the lease at ${this.where}: ${(err as Error).message}`, { cause: err });
    }
  }

  close(): void {
    this.client.destroy();
  }
}
