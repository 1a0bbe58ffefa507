// A fake S3 (path-style: http://host:port/bucket/key, which the SDK and the
// CLI use for an IP endpoint) holding objects in memory: PutObject (also
// conditional, If-None-Match: * and If-Match, as the mirror's S3 arbiter
// writes its lease), GetObject, HeadObject. Bodies the SDK sends aws-chunked (with a trailing checksum) are
// decoded, so what is stored is what the client meant. Requests signed with an
// access key that has grants (an instance role's, see grant()) are checked
// against them as IAM would check that role's S3 statements.
import { createHash } from 'node:crypto';
import { type FakeRequest, type FakeResponse, type Handler, requireScope, xmlEscape } from './http';

function s3Error(status: number, code: string, message: string, key = ''): FakeResponse {
  return {
    status,
    headers: { 'content-type': 'application/xml' },
    body: `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message><Key>${xmlEscape(key)}</Key><RequestId>fake</RequestId></Error>`,
  };
}

/** aws-chunked: "<hex size>[;chunk-signature=...]\r\n<data>\r\n" ... "0\r\n<trailers>\r\n\r\n". */
export function decodeAwsChunked(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', at);
    if (eol < 0) throw new Error('aws-chunked body: missing chunk header');
    const size = parseInt(body.subarray(at, eol).toString().split(';')[0], 16);
    if (Number.isNaN(size)) throw new Error('aws-chunked body: bad chunk size');
    if (size === 0) return Buffer.concat(parts);
    parts.push(body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

export interface StoredObject {
  readonly body: Buffer;
  readonly contentType?: string;
  readonly etag: string;
  /** base64 SHA-256 of the body, when the client sent one (x-amz-checksum-sha256): HEAD/GET report it with x-amz-checksum-mode: ENABLED, as S3 does. */
  readonly sha256?: string;
}

/** One Allow statement: IAM actions (`s3:GetObject*`) and resource ARNs (`arn:aws:s3:::bucket/prefix/*`), `*` and `?` as IAM reads them. */
export interface S3Grant {
  readonly actions: readonly string[];
  readonly resources: readonly string[];
}

/** Whether `grants` allow `action` on `arn`; no grants at all: not checked (the test's own seeding, a fake used alone). */
export function allowedBy(grants: readonly S3Grant[] | undefined, action: string, arn: string): boolean {
  if (!grants) return true;
  return grants.some((g) => g.actions.some((a) => iamMatch(a, action)) && g.resources.some((r) => iamMatch(r, arn)));
}

export function iamMatch(pattern: string, value: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(value);
}

export class FakeS3 {
  /** "bucket/key" -> object. */
  readonly objects = new Map<string, StoredObject>();
  private readonly grants = new Map<string, readonly S3Grant[]>();
  /** Requests refused for want of a grant, as "<access key> <action> <arn>". */
  readonly denied: string[] = [];

  /**
   * From now on, requests signed with `accessKeyId` are allowed only what
   * `grants` allow (an instance role's S3 statements). Access keys never
   * granted are not checked: the test's own seeding, and fakes used alone.
   */
  grant(accessKeyId: string, grants: readonly S3Grant[]): void {
    this.grants.set(accessKeyId, grants);
  }

  private allowed(accessKeyId: string, action: string, arn: string): boolean {
    return allowedBy(this.grants.get(accessKeyId), action, arn);
  }

  put(bucket: string, key: string, body: string | Buffer): void {
    const data = Buffer.from(body);
    this.objects.set(`${bucket}/${key}`, { body: data, etag: `"${createHash('md5').update(data).digest('hex')}"` });
  }

  get(bucket: string, key: string): Buffer | undefined {
    return this.objects.get(`${bucket}/${key}`)?.body;
  }

  readonly handler: Handler = (request: FakeRequest): FakeResponse => {
    const refused = requireScope(request, 's3', (m) => s3Error(403, 'AccessDenied', m));
    if (refused) return refused;
    const m = /^\/([^/]+)\/(.+)$/.exec(request.path);
    if (!m) return s3Error(400, 'NotImplemented', `fake S3 serves path-style object requests only, not ${request.method} ${request.path}`);
    const [, bucket, key] = m;
    const id = `${bucket}/${key}`;
    const action = request.method === 'PUT' ? 's3:PutObject' : 's3:GetObject'; // HEAD is authorised as GetObject
    const accessKeyId = request.scope?.accessKeyId ?? '';
    if (!this.allowed(accessKeyId, action, `arn:aws:s3:::${id}`)) {
      this.denied.push(`${accessKeyId} ${action} arn:aws:s3:::${id}`);
      return s3Error(403, 'AccessDenied', `${accessKeyId} is not authorized to perform ${action} on arn:aws:s3:::${id}`, key);
    }
    if (request.method === 'PUT') {
      // Conditional writes, as S3 has them since 2024: If-None-Match: * creates only; If-Match names the ETag to replace.
      const existing = this.objects.get(id);
      const ifNoneMatch = request.headers['if-none-match'];
      const ifMatch = request.headers['if-match'];
      if ((ifNoneMatch === '*' && existing) || (ifMatch !== undefined && existing?.etag !== ifMatch)) {
        return s3Error(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', key);
      }
      const chunked = String(request.headers['content-encoding'] ?? '').includes('aws-chunked') || String(request.headers['x-amz-content-sha256'] ?? '').startsWith('STREAMING-');
      const body = chunked ? decodeAwsChunked(request.body) : request.body;
      const etag = `"${createHash('md5').update(body).digest('hex')}"`;
      const sha256 = createHash('sha256').update(body).digest('base64');
      const sent = request.headers['x-amz-checksum-sha256'];
      // The volley S3 shipper HEADs its upload and compares this checksum before it deletes the local file.
      if (sent !== undefined && sent !== sha256) return s3Error(400, 'BadDigest', 'The SHA256 you specified did not match the calculated checksum.', key);
      this.objects.set(id, { body, etag, contentType: request.headers['content-type'], sha256: sent === undefined ? undefined : sha256 });
      return { status: 200, headers: { etag, ...(sent === undefined ? {} : { 'x-amz-checksum-sha256': sha256 }) } };
    }
    if (request.method === 'GET' || request.method === 'HEAD') {
      const object = this.objects.get(id);
      if (!object) return request.method === 'HEAD' ? { status: 404 } : s3Error(404, 'NoSuchKey', 'The specified key does not exist.', key);
      return {
        status: 200,
        headers: {
          etag: object.etag,
          'content-length': String(object.body.length),
          'content-type': object.contentType ?? 'binary/octet-stream',
          'last-modified': new Date().toUTCString(),
          ...(object.sha256 && String(request.headers['x-amz-checksum-mode'] ?? '').toUpperCase() === 'ENABLED' ? { 'x-amz-checksum-sha256': object.sha256, 'x-amz-checksum-type': 'FULL_OBJECT' } : {}),
        },
        body: request.method === 'GET' ? object.body : undefined,
      };
    }
    return s3Error(405, 'MethodNotAllowed', `fake S3 does not implement ${request.method}`);
  };
}
