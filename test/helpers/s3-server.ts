// A small S3-compatible server on loopback for tests that need a real peer
// for the AWS SDK (no S3 implementation ships in Debian here). It speaks the
// REST subset the SDK and lib-storage use — PutObject, CreateMultipartUpload,
// UploadPart, CompleteMultipartUpload, AbortMultipartUpload, HeadObject,
// GetObject, ListObjectsV2 (PutObject also conditional: If-Match, If-None-Match: *)
// — path-style (http://127.0.0.1:port/bucket/key),
// keeps objects in memory, and refuses what S3 refuses: every request's SigV4
// signature is verified (test/helpers/sigv4.ts), bodies are checked against
// x-amz-content-sha256, Content-MD5 and the x-amz-checksum-* headers or
// aws-chunked trailers, and a multipart object gets S3's composite checksum.
// It can also be made unreachable (503, or the port refusing connections).
// test/rehearsal/fake-aws/s3.ts is the rehearsal's simpler, unsigned fake;
// this one is stricter on purpose and leaves that one alone.
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { crc32 } from 'node:zlib';
import { chunkSignature, type Credentials, sha256Hex, SigV4Error, verifySigV4, type Verified } from './sigv4';

export type ChecksumAlgorithm = 'sha256' | 'sha1' | 'crc32';

export interface StoredObject {
  readonly body: Buffer;
  readonly etag: string;
  readonly contentType?: string;
  readonly contentEncoding?: string;
  readonly metadata: Record<string, string>;
  /** What S3 would report with x-amz-checksum-mode: ENABLED. */
  readonly checksum?: { algorithm: ChecksumAlgorithm; value: string; type: 'FULL_OBJECT' | 'COMPOSITE' };
  readonly lastModified: Date;
}

interface Part {
  readonly body: Buffer;
  readonly etag: string;
  readonly checksum?: Buffer;
}

interface PendingUpload {
  readonly bucket: string;
  readonly key: string;
  readonly algorithm?: ChecksumAlgorithm;
  readonly contentType?: string;
  readonly contentEncoding?: string;
  readonly metadata: Record<string, string>;
  readonly parts: Map<number, Part>;
}

export interface LoggedRequest {
  readonly method: string;
  readonly operation: string;
  readonly key?: string;
  readonly status: number;
  /** The x-amz-content-sha256 the client sent: how it chose to send the payload. */
  readonly payload?: string;
}

export interface S3ServerOptions {
  /** Buckets that exist; a request for any other is NoSuchBucket. */
  readonly buckets: readonly string[];
  /** Access key id -> secret (and session token). */
  readonly credentials: Record<string, Credentials>;
  /** The server's clock, for RequestTimeTooSkewed. */
  readonly now?: () => number;
}

/** S3 refuses a part smaller than this unless it is the last one. */
export const MIN_PART_SIZE = 5 * 1024 * 1024;

class S3Failure extends Error {
  constructor(
    readonly status: number,
    readonly s3Code: string,
    message: string,
  ) {
    super(message);
  }
}

function xml(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function digest(algorithm: ChecksumAlgorithm, data: Buffer): Buffer {
  if (algorithm === 'crc32') {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(crc32(data));
    return out;
  }
  return createHash(algorithm).update(data).digest();
}

function md5(data: Buffer): Buffer {
  return createHash('md5').update(data).digest();
}

const ALGORITHMS: readonly ChecksumAlgorithm[] = ['sha256', 'sha1', 'crc32'];

function parseAlgorithm(value: string | undefined): ChecksumAlgorithm | undefined {
  if (!value) return undefined;
  const a = value.toLowerCase() as ChecksumAlgorithm;
  if (!ALGORITHMS.includes(a)) throw new S3Failure(400, 'InvalidRequest', `this test server verifies ${ALGORITHMS.join(', ')} checksums, not ${value}`);
  return a;
}

/**
 * Decodes an aws-chunked body: `<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n`
 * ... `0[;chunk-signature=<sig>]\r\n[<trailer>:<value>\r\n]*\r\n`. With
 * `signing` every chunk's signature is checked, chained from the seed.
 */
function decodeAwsChunked(body: Buffer, signing?: Verified): { data: Buffer; trailers: Record<string, string> } {
  const parts: Buffer[] = [];
  let at = 0;
  let previous = signing?.signature;
  for (;;) {
    const eol = body.indexOf('\r\n', at);
    if (eol < 0) throw new S3Failure(400, 'IncompleteBody', 'aws-chunked body: missing chunk header');
    const [sizeText, ...extensions] = body.subarray(at, eol).toString('latin1').split(';');
    const size = parseInt(sizeText, 16);
    if (!/^[0-9a-fA-F]+$/.test(sizeText) || Number.isNaN(size)) throw new S3Failure(400, 'InvalidChunkSizeError', `aws-chunked body: bad chunk size "${sizeText}"`);
    const data = body.subarray(eol + 2, eol + 2 + size);
    if (data.length !== size) throw new S3Failure(400, 'IncompleteBody', 'aws-chunked body: chunk shorter than its size');
    if (signing && previous) {
      const sent = extensions.find((e) => e.startsWith('chunk-signature='))?.slice('chunk-signature='.length);
      const expected = chunkSignature(signing, previous, data);
      if (sent !== expected) throw new S3Failure(403, 'SignatureDoesNotMatch', 'a chunk signature does not match');
      previous = expected;
    }
    if (size === 0) {
      const trailers: Record<string, string> = {};
      const rest = body.subarray(eol + 2).toString('latin1');
      for (const line of rest.split('\r\n')) {
        if (!line) continue;
        const colon = line.indexOf(':');
        if (colon <= 0) throw new S3Failure(400, 'MalformedTrailerError', `aws-chunked trailer "${line}"`);
        trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      return { data: Buffer.concat(parts), trailers };
    }
    parts.push(data);
    if (body.subarray(eol + 2 + size, eol + 4 + size).toString('latin1') !== '\r\n') throw new S3Failure(400, 'IncompleteBody', 'aws-chunked body: chunk not followed by CRLF');
    at = eol + 4 + size;
  }
}

function single(headers: IncomingMessage['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export class S3Server {
  /** "bucket/key" -> object. */
  readonly objects = new Map<string, StoredObject>();
  readonly uploads = new Map<string, PendingUpload>();
  readonly requests: LoggedRequest[] = [];
  /** Changes what is stored (a test's bit rot, or a broken middlebox): S3 then reports this object, not what was sent. */
  onStore?: (bucket: string, key: string, object: StoredObject) => StoredObject;
  private readonly keys: Map<string, Credentials>;
  private readonly buckets: Set<string>;
  private readonly now: () => number;
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private mode: 'up' | 'unavailable' | 'refusing' | 'hanging' = 'up';
  /** Requests held unanswered while hanging. */
  readonly held: ServerResponse[] = [];
  private boundPort = 0;

  private constructor(options: S3ServerOptions) {
    this.keys = new Map(Object.entries(options.credentials));
    this.buckets = new Set(options.buckets);
    this.now = options.now ?? Date.now;
  }

  static async start(options: S3ServerOptions): Promise<S3Server> {
    const s3 = new S3Server(options);
    await s3.listen(0);
    return s3;
  }

  get port(): number {
    return this.boundPort;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.boundPort}`;
  }

  object(bucket: string, key: string): StoredObject | undefined {
    return this.objects.get(`${bucket}/${key}`);
  }

  /**
   * An outage until `restore()`: `unavailable` answers every request 503
   * ServiceUnavailable (S3 under load or a regional event); `refusing`
   * closes the port, so connections are refused (no route to S3);
   * `hanging` takes requests and never answers (a black hole: only the
   * client's timeout or abort ends them).
   */
  async outage(kind: 'unavailable' | 'refusing' | 'hanging'): Promise<void> {
    this.mode = kind;
    if (kind === 'refusing') await this.closeListener();
  }

  async restore(): Promise<void> {
    if (this.mode === 'refusing') await this.listen(this.boundPort);
    for (const res of this.held.splice(0)) res.socket?.destroy();
    this.mode = 'up';
  }

  async close(): Promise<void> {
    this.held.splice(0);
    await this.closeListener();
  }

  private listen(port: number): Promise<void> {
    const server = createServer((req, res) => this.receive(req, res));
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        this.boundPort = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private closeListener(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return Promise.resolve();
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  private receive(req: IncomingMessage, res: ServerResponse): void {
    if (this.mode === 'hanging') {
      this.held.push(res);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let operation = 'Unknown';
      let key: string | undefined;
      const payload = single(req.headers, 'x-amz-content-sha256');
      const answer = (status: number, headers: Record<string, string>, body?: string | Buffer) => {
        this.requests.push({ method: req.method ?? '', operation, key, status, payload });
        res.writeHead(status, headers);
        res.end(req.method === 'HEAD' ? undefined : body);
      };
      try {
        if (this.mode === 'unavailable') throw new S3Failure(503, 'ServiceUnavailable', 'Please reduce your request rate.');
        const url = req.url ?? '/';
        const q = url.indexOf('?');
        const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
        const path = (q < 0 ? url : url.slice(0, q)).split('/').map((s) => decodeURIComponent(s));
        const bucket = path[1];
        key = path.slice(2).join('/') || undefined;
        operation = this.operation(req.method ?? '', key, query);
        const verified = this.authenticate(req, url);
        if (!bucket || !this.buckets.has(bucket)) throw new S3Failure(404, 'NoSuchBucket', `The specified bucket does not exist: ${bucket ?? ''}`);
        const body = this.payload(req, Buffer.concat(chunks), verified);
        const r = this.handle(operation, bucket, key ?? '', query, req, body);
        answer(r.status, r.headers, r.body);
      } catch (err) {
        const f =
          err instanceof S3Failure ? err : err instanceof SigV4Error ? new S3Failure(err.status, err.s3Code, err.message) : new S3Failure(500, 'InternalError', (err as Error).message);
        answer(f.status, { 'content-type': 'application/xml' }, `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${f.s3Code}</Code><Message>${xml(f.message)}</Message><RequestId>test</RequestId></Error>`);
      }
    });
  }

  private authenticate(req: IncomingMessage, url: string): Verified {
    return verifySigV4({ method: req.method ?? '', url, headers: req.headers }, this.keys, this.now());
  }

  private operation(method: string, key: string | undefined, query: URLSearchParams): string {
    if (!key) {
      if (method === 'GET' && query.get('list-type') === '2') return 'ListObjectsV2';
      throw new S3Failure(501, 'NotImplemented', `this test server does not implement ${method} on a bucket`);
    }
    if (method === 'PUT' && query.has('uploadId')) return 'UploadPart';
    if (method === 'PUT') return 'PutObject';
    if (method === 'POST' && query.has('uploads')) return 'CreateMultipartUpload';
    if (method === 'POST' && query.has('uploadId')) return 'CompleteMultipartUpload';
    if (method === 'DELETE' && query.has('uploadId')) return 'AbortMultipartUpload';
    if (method === 'HEAD') return 'HeadObject';
    if (method === 'GET') return 'GetObject';
    throw new S3Failure(501, 'NotImplemented', `this test server does not implement ${method} on an object`);
  }

  /** The payload as the client meant it, after checking it against what was signed and declared. */
  private payload(req: IncomingMessage, raw: Buffer, verified: Verified): Buffer {
    const declared = single(req.headers, 'x-amz-content-sha256') ?? '';
    let body: Buffer;
    let trailers: Record<string, string> = {};
    if (declared === 'UNSIGNED-PAYLOAD') body = raw;
    else if (declared === 'STREAMING-UNSIGNED-PAYLOAD-TRAILER') ({ data: body, trailers } = decodeAwsChunked(raw));
    else if (declared === 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD') ({ data: body } = decodeAwsChunked(raw, verified));
    else if (/^[0-9a-f]{64}$/.test(declared)) {
      if (sha256Hex(raw) !== declared) throw new S3Failure(400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
      body = raw;
    } else throw new S3Failure(400, 'InvalidArgument', `this test server does not accept x-amz-content-sha256: ${declared}`);

    const decodedLength = single(req.headers, 'x-amz-decoded-content-length');
    if (decodedLength !== undefined && Number(decodedLength) !== body.length) throw new S3Failure(400, 'IncompleteBody', `x-amz-decoded-content-length ${decodedLength}, body ${body.length} bytes`);
    const trailerNames = (single(req.headers, 'x-amz-trailer') ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
    for (const name of trailerNames) if (!(name in trailers)) throw new S3Failure(400, 'MalformedTrailerError', `x-amz-trailer names ${name}, the body has no such trailer`);

    const contentMd5 = single(req.headers, 'content-md5');
    if (contentMd5 !== undefined && md5(body).toString('base64') !== contentMd5) throw new S3Failure(400, 'BadDigest', 'The Content-MD5 you specified did not match what we received.');
    for (const [name, value] of [...Object.entries(req.headers), ...Object.entries(trailers)]) {
      const m = /^x-amz-checksum-([a-z0-9]+)$/.exec(name);
      if (!m || m[1] === 'mode' || m[1] === 'algorithm' || m[1] === 'type') continue;
      const algorithm = parseAlgorithm(m[1])!;
      if (digest(algorithm, body).toString('base64') !== String(value)) {
        throw new S3Failure(400, 'BadDigest', `The ${algorithm.toUpperCase()} you specified did not match the calculated checksum.`);
      }
    }
    return body;
  }

  /** The checksum the client sent for this body (header or trailer), already verified by payload(). */
  private sentChecksum(req: IncomingMessage, body: Buffer, algorithm: ChecksumAlgorithm | undefined): Buffer | undefined {
    const named = algorithm ?? ALGORITHMS.find((a) => req.headers[`x-amz-checksum-${a}`] !== undefined || String(req.headers['x-amz-trailer'] ?? '').includes(`x-amz-checksum-${a}`));
    return named ? digest(named, body) : undefined;
  }

  private handle(operation: string, bucket: string, key: string, query: URLSearchParams, req: IncomingMessage, body: Buffer): { status: number; headers: Record<string, string>; body?: string | Buffer } {
    const id = `${bucket}/${key}`;
    const metadata = Object.fromEntries(Object.entries(req.headers).filter(([h]) => h.startsWith('x-amz-meta-')).map(([h, v]) => [h.slice('x-amz-meta-'.length), String(v)]));
    switch (operation) {
      case 'PutObject': {
        // Conditional writes, as S3 has them since 2024: If-None-Match: * creates only; If-Match names the ETag to replace.
        const existing = this.objects.get(id);
        const ifNoneMatch = single(req.headers, 'if-none-match');
        const ifMatch = single(req.headers, 'if-match');
        if ((ifNoneMatch === '*' && existing) || (ifMatch !== undefined && existing?.etag !== ifMatch)) {
          throw new S3Failure(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
        }
        const algorithm =
          parseAlgorithm(single(req.headers, 'x-amz-sdk-checksum-algorithm')) ??
          ALGORITHMS.find((a) => req.headers[`x-amz-checksum-${a}`] !== undefined || String(req.headers['x-amz-trailer'] ?? '').includes(`x-amz-checksum-${a}`));
        const etag = `"${md5(body).toString('hex')}"`;
        const checksum = algorithm ? { algorithm, value: digest(algorithm, body).toString('base64'), type: 'FULL_OBJECT' as const } : undefined;
        this.store(bucket, key, { body, etag, contentType: single(req.headers, 'content-type'), contentEncoding: single(req.headers, 'content-encoding')?.replace(/,?\s*aws-chunked/, '') || undefined, metadata, checksum, lastModified: new Date(this.now()) });
        return { status: 200, headers: { etag, ...(checksum ? { [`x-amz-checksum-${checksum.algorithm}`]: checksum.value } : {}) } };
      }
      case 'CreateMultipartUpload': {
        const uploadId = randomUUID();
        const algorithm = parseAlgorithm(single(req.headers, 'x-amz-checksum-algorithm'));
        this.uploads.set(uploadId, { bucket, key, algorithm, contentType: single(req.headers, 'content-type'), contentEncoding: single(req.headers, 'content-encoding'), metadata, parts: new Map() });
        return {
          status: 200,
          headers: { 'content-type': 'application/xml', ...(algorithm ? { 'x-amz-checksum-algorithm': algorithm.toUpperCase() } : {}) },
          body: `<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult><Bucket>${xml(bucket)}</Bucket><Key>${xml(key)}</Key><UploadId>${uploadId}</UploadId></InitiateMultipartUploadResult>`,
        };
      }
      case 'UploadPart': {
        const upload = this.pending(query, bucket, key);
        const partNumber = Number(query.get('partNumber'));
        if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10000) throw new S3Failure(400, 'InvalidArgument', `partNumber ${query.get('partNumber')}`);
        if (upload.algorithm && req.headers[`x-amz-checksum-${upload.algorithm}`] === undefined && !String(req.headers['x-amz-trailer'] ?? '').includes(`x-amz-checksum-${upload.algorithm}`)) {
          throw new S3Failure(400, 'InvalidRequest', `the upload was created with checksum ${upload.algorithm}; this part carries none`);
        }
        const etag = `"${md5(body).toString('hex')}"`;
        const checksum = this.sentChecksum(req, body, upload.algorithm);
        upload.parts.set(partNumber, { body, etag, checksum });
        return { status: 200, headers: { etag, ...(checksum && upload.algorithm ? { [`x-amz-checksum-${upload.algorithm}`]: checksum.toString('base64') } : {}) } };
      }
      case 'CompleteMultipartUpload':
        return this.complete(query, bucket, key, body);
      case 'AbortMultipartUpload':
        this.pending(query, bucket, key);
        this.uploads.delete(query.get('uploadId')!);
        return { status: 204, headers: {} };
      case 'HeadObject':
      case 'GetObject': {
        const object = this.objects.get(id);
        if (!object) throw new S3Failure(404, 'NoSuchKey', 'The specified key does not exist.');
        const headers: Record<string, string> = {
          etag: object.etag,
          'content-length': String(object.body.length),
          'content-type': object.contentType ?? 'binary/octet-stream',
          'last-modified': object.lastModified.toUTCString(),
          ...(object.contentEncoding ? { 'content-encoding': object.contentEncoding } : {}),
          ...Object.fromEntries(Object.entries(object.metadata).map(([k, v]) => [`x-amz-meta-${k}`, v])),
        };
        if (object.checksum && single(req.headers, 'x-amz-checksum-mode')?.toUpperCase() === 'ENABLED') {
          headers[`x-amz-checksum-${object.checksum.algorithm}`] = object.checksum.value;
          headers['x-amz-checksum-type'] = object.checksum.type;
        }
        return { status: 200, headers, body: object.body };
      }
      case 'ListObjectsV2': {
        const prefix = query.get('prefix') ?? '';
        const contents = [...this.objects.entries()]
          .filter(([k]) => k.startsWith(`${bucket}/${prefix}`))
          .map(([k, o]) => `<Contents><Key>${xml(k.slice(bucket.length + 1))}</Key><Size>${o.body.length}</Size><ETag>${xml(o.etag)}</ETag><LastModified>${o.lastModified.toISOString()}</LastModified></Contents>`);
        return {
          status: 200,
          headers: { 'content-type': 'application/xml' },
          body: `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>${xml(bucket)}</Name><Prefix>${xml(prefix)}</Prefix><KeyCount>${contents.length}</KeyCount><IsTruncated>false</IsTruncated>${contents.join('')}</ListBucketResult>`,
        };
      }
      default:
        throw new S3Failure(501, 'NotImplemented', operation);
    }
  }

  private store(bucket: string, key: string, object: StoredObject): void {
    this.objects.set(`${bucket}/${key}`, this.onStore ? this.onStore(bucket, key, object) : object);
  }

  private pending(query: URLSearchParams, bucket: string, key: string): PendingUpload {
    const upload = this.uploads.get(query.get('uploadId') ?? '');
    if (!upload || upload.bucket !== bucket || upload.key !== key) throw new S3Failure(404, 'NoSuchUpload', 'The specified upload does not exist.');
    return upload;
  }

  /** S3's rules: parts listed in ascending order, each as uploaded (ETag, checksum), all but the last at least 5 MiB. */
  private complete(query: URLSearchParams, bucket: string, key: string, body: Buffer) {
    const upload = this.pending(query, bucket, key);
    const listed = [...body.toString('utf8').matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map(([, part]) => {
      const field = (name: string) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(part)?.[1];
      return { number: Number(field('PartNumber')), etag: (field('ETag') ?? '').replace(/&quot;/g, '"'), checksum: upload.algorithm ? field(`Checksum${upload.algorithm.toUpperCase()}`) : undefined };
    });
    if (listed.length === 0) throw new S3Failure(400, 'MalformedXML', 'no parts listed');
    const parts: Part[] = [];
    listed.forEach((p, i) => {
      if (i > 0 && p.number <= listed[i - 1].number) throw new S3Failure(400, 'InvalidPartOrder', 'The list of parts was not in ascending order.');
      const part = upload.parts.get(p.number);
      if (!part || part.etag !== p.etag) throw new S3Failure(400, 'InvalidPart', `part ${p.number} was not uploaded, or its ETag differs`);
      if (upload.algorithm && p.checksum !== part.checksum?.toString('base64')) throw new S3Failure(400, 'InvalidPart', `part ${p.number}: its checksum differs from the uploaded part's`);
      if (i < listed.length - 1 && part.body.length < MIN_PART_SIZE) throw new S3Failure(400, 'EntityTooSmall', `part ${p.number} is ${part.body.length} bytes, under 5 MiB`);
      parts.push(part);
    });
    const data = Buffer.concat(parts.map((p) => p.body));
    const etag = `"${md5(Buffer.concat(parts.map((p) => md5(p.body)))).toString('hex')}-${parts.length}"`;
    // A composite checksum: the checksum of the parts' checksums, "-<number of parts>".
    const checksum = upload.algorithm
      ? { algorithm: upload.algorithm, value: `${digest(upload.algorithm, Buffer.concat(parts.map((p) => p.checksum!))).toString('base64')}-${parts.length}`, type: 'COMPOSITE' as const }
      : undefined;
    this.store(bucket, key, { body: data, etag, contentType: upload.contentType, contentEncoding: upload.contentEncoding, metadata: upload.metadata, checksum, lastModified: new Date(this.now()) });
    this.uploads.delete(query.get('uploadId')!);
    const checksumXml = checksum ? `<Checksum${checksum.algorithm.toUpperCase()}>${checksum.value}</Checksum${checksum.algorithm.toUpperCase()}><ChecksumType>COMPOSITE</ChecksumType>` : '';
    return {
      status: 200,
      headers: { 'content-type': 'application/xml' },
      body: `<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult><Location>http://127.0.0.1:${this.boundPort}/${xml(bucket)}/${xml(key)}</Location><Bucket>${xml(bucket)}</Bucket><Key>${xml(key)}</Key><ETag>${xml(etag)}</ETag>${checksumXml}</CompleteMultipartUploadResult>`,
    };
  }
}
