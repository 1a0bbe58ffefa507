// The s3 sink: ships closed files (rotated event-log files, closed SQLite
// accounting files) to `s3://<bucket>/<prefix>/<env>/<node>/<kind>/yyyy/mm/dd/<file>[.gz]`
// and tells their source a file may go only once S3 holds it and its
// checksum was verified. An S3 outage costs nothing but time: the file stays
// on disk and the next round (after a backoff) tries again.
//
// Gzip: the object is the gzipped file under a `.gz` name with
// `Content-Type: application/gzip` and no `Content-Encoding`. With
// `Content-Encoding: gzip` many HTTP clients would unzip it on download, so
// the bytes a reader got would match neither the object's size nor its
// checksum, and data-lake tools pick the codec from the `.gz` suffix anyway.
//
// Checksum: SHA-256, computed by the SDK for every request (PutObject, each
// UploadPart) and checked by S3 before it stores the bytes. We also compute
// it ourselves while gzipping, and after the upload HEAD the object
// (ChecksumMode ENABLED) and compare its size and checksum with ours: a
// single PUT's checksum is the body's SHA-256, a multipart object's is S3's
// composite (the SHA-256 of the parts' SHA-256s, then "-<parts>").
import { HeadObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { S3SinkConfig } from '../../../shared/config/events';
import { errorCode, VolleyError } from '../../../shared/errors';
import type { ShipSource, SinkDeps } from '../types';
import { objectKey, startFromName } from './s3-key';

/** Above this a file goes as a multipart upload, in parts of this size (S3's minimum part is 5 MiB). */
export const PART_SIZE = 8 * 1024 * 1024;
/** The longest wait between rounds while S3 keeps failing. */
export const MAX_BACKOFF_MS = 15 * 60_000;

export interface ShipperStats {
  filesShipped: number;
  bytesShipped: number;
  /** Files the sources offered at the last look, not yet shipped. */
  filesWaiting: number;
  /** Rounds in a row that failed (0 once one succeeds). */
  failures: number;
  lastSuccess?: string;
  lastError?: string;
}

export interface S3ShipperDeps extends SinkDeps {
  /** The deployment environment (dev, staging, prod): `VOLLEY_ENV` in /etc/volley/instance.env on an instance. */
  env: string;
  sources: ShipSource[];
  /** Merged into the S3 client's config. Absent in production: credentials come from the default provider chain (the instance role). */
  client?: S3ClientConfig;
  /** Where the region is looked up when the config names none (default process.env). */
  processEnv?: Record<string, string | undefined>;
  /** Jitter of the backoff, injected for tests (default Math.random). */
  random?: () => number;
  /** Runs `fn` after `ms`; returns its cancel. Injected for tests (default an unref'd setTimeout). */
  setTimer?: (fn: () => void, ms: number) => () => void;
}

function realTimer(fn: () => void, ms: number): () => void {
  const t = setTimeout(fn, ms);
  // A pending round never keeps the process alive on its own.
  t.unref();
  return () => clearTimeout(t);
}

export interface S3Shipper {
  start(): void;
  /** One round now (or the one already running): every offered file shipped, or the first failure. */
  shipNow(): Promise<void>;
  close(): Promise<void>;
  stats(): ShipperStats;
  /** Closed files not shipped yet, counted now (filesWaiting is as of the last round): what `volley drain` waits for. */
  unshipped(): Promise<number>;
}

/** What is uploaded for one file, and the checksums S3 must end up reporting for it. */
interface Prepared {
  readonly path: string;
  readonly size: number;
  /** base64 SHA-256 of the whole body: a single PUT's checksum. */
  readonly sha256: string;
  /** S3's composite checksum were it uploaded in PART_SIZE parts. */
  readonly composite: string;
  readonly sourceSha256: string;
  readonly sourceSize: number;
  readonly staged: boolean;
}

/** Hashes what passes through: the whole, and each PART_SIZE slice as lib-storage will cut it. */
class Hasher extends Transform {
  size = 0;
  private readonly whole = createHash('sha256');
  private part = createHash('sha256');
  private partFill = 0;
  private readonly partDigests: Buffer[] = [];

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.whole.update(chunk);
    this.size += chunk.length;
    let at = 0;
    while (at < chunk.length) {
      const take = Math.min(PART_SIZE - this.partFill, chunk.length - at);
      this.part.update(chunk.subarray(at, at + take));
      this.partFill += take;
      at += take;
      if (this.partFill === PART_SIZE) {
        this.partDigests.push(this.part.digest());
        this.part = createHash('sha256');
        this.partFill = 0;
      }
    }
    this.push(chunk);
    done();
  }

  result(): { sha256: string; composite: string; hex: string } {
    const wholeDigest = this.whole.digest();
    const digests = this.partFill > 0 || this.partDigests.length === 0 ? [...this.partDigests, this.part.digest()] : this.partDigests;
    const composite = `${createHash('sha256').update(Buffer.concat(digests)).digest('base64')}-${digests.length}`;
    return { sha256: wholeDigest.toString('base64'), composite, hex: wholeDigest.toString('hex') };
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return false;
    throw err;
  }
}

function discard(): Writable {
  return new Writable({ write: (_c, _e, done) => done() });
}

const CONTENT_TYPES: Record<ShipSource['kind'], string> = { events: 'application/x-ndjson', sqlite: 'application/vnd.sqlite3' };

export function createS3Shipper(config: S3SinkConfig, deps: S3ShipperDeps): S3Shipper {
  const now = deps.now ?? Date.now;
  const random = deps.random ?? Math.random;
  const setTimer = deps.setTimer ?? realTimer;
  const env = deps.processEnv ?? process.env;
  const region = config.region ?? deps.client?.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? env.VOLLEY_REGION;
  if (!region) throw new VolleyError('ES3REGION', `s3 sink "${config.name}": no region (set events.sinks[].region, or AWS_REGION)`);
  const client = new S3Client({
    region,
    ...(config.endpoint ? { endpoint: config.endpoint, forcePathStyle: true } : {}),
    // The SDK waits forever by default: an S3 that takes a connection and never answers would stall every later file.
    // requestTimeout is the socket's idle time, not the whole upload's.
    requestHandler: { connectionTimeout: 10_000, requestTimeout: 60_000 },
    ...deps.client,
  });
  // A bad environment or node id is a configuration error: refused now, not at every round.
  objectKey({ prefix: config.prefix, env: deps.env, node: deps.nodeId, kind: 'events', file: 'check', start: new Date(0), gzip: false });
  const sources = deps.sources.filter((s) => config.ship.includes(s.kind));
  const stagingDir = join(deps.persistentPath, 'events', 's3-staging');
  const log = deps.logger.child({ sink: config.name });

  const stats: ShipperStats = { filesShipped: 0, bytesShipped: 0, filesWaiting: 0, failures: 0 };
  let cancelTimer: (() => void) | undefined;
  let round: Promise<void> | undefined;
  let closed = false;
  let started = false;
  const abort = new AbortController();

  async function prepare(file: string): Promise<Prepared> {
    const source = new Hasher();
    if (!config.gzip) {
      await pipeline(createReadStream(file), source, discard());
      const r = source.result();
      return { path: file, size: source.size, sha256: r.sha256, composite: r.composite, sourceSha256: r.hex, sourceSize: source.size, staged: false };
    }
    await mkdir(stagingDir, { recursive: true });
    const staged = join(stagingDir, `${basename(file)}.gz`);
    const body = new Hasher();
    try {
      await pipeline(createReadStream(file), source, createGzip(), body, createWriteStream(staged), { signal: abort.signal });
    } catch (err) {
      await rm(staged, { force: true });
      throw err;
    }
    const s = source.result();
    const b = body.result();
    return { path: staged, size: body.size, sha256: b.sha256, composite: b.composite, sourceSha256: s.hex, sourceSize: source.size, staged: true };
  }

  async function shipOne(source: ShipSource, file: string, key: string, prepared: Prepared): Promise<void> {
    try {
      const upload = new Upload({
        client,
        partSize: PART_SIZE,
        // Two parts in flight at most: shipping is background work beside delivery, and memory is queueSize * partSize.
        queueSize: 2,
        leavePartsOnError: false,
        abortController: abort,
        params: {
          Bucket: config.bucket,
          Key: key,
          Body: createReadStream(prepared.path),
          ContentLength: prepared.size,
          ContentType: config.gzip ? 'application/gzip' : CONTENT_TYPES[source.kind],
          ChecksumAlgorithm: 'SHA256',
          // The uncompressed file's own hash and size: a reader can check what it unzipped.
          Metadata: { 'volley-source-sha256': prepared.sourceSha256, 'volley-source-size': String(prepared.sourceSize) },
        },
      });
      await upload.done();
      const head = await client.send(new HeadObjectCommand({ Bucket: config.bucket, Key: key, ChecksumMode: 'ENABLED' }), { abortSignal: abort.signal });
      const reported = head.ChecksumSHA256;
      if (head.ContentLength !== prepared.size || (reported !== prepared.sha256 && reported !== prepared.composite)) {
        throw new VolleyError(
          'ES3VERIFY',
          `s3://${config.bucket}/${key}: S3 reports ${head.ContentLength} bytes, SHA-256 ${reported ?? 'none'}; we sent ${prepared.size} bytes, ${prepared.sha256} (composite ${prepared.composite})`,
        );
      }
      // Only now may the source let it go.
      await source.shipped(file, config.keepLocal);
      stats.filesShipped += 1;
      stats.bytesShipped += prepared.size;
      stats.filesWaiting = Math.max(0, stats.filesWaiting - 1);
      stats.lastSuccess = new Date(now()).toISOString();
      log.info({ file, key: `s3://${config.bucket}/${key}`, bytes: prepared.size, keepLocal: config.keepLocal }, 'shipped to s3');
    } finally {
      if (prepared.staged) await rm(prepared.path, { force: true });
    }
  }

  async function keyFor(source: ShipSource, file: string): Promise<string> {
    const start = startFromName(file) ?? (await stat(file)).mtime;
    return objectKey({ prefix: config.prefix, env: deps.env, node: deps.nodeId, kind: source.kind, file, start, gzip: config.gzip });
  }

  async function runRound(): Promise<void> {
    const offered: { source: ShipSource; file: string }[] = [];
    for (const source of sources) for (const file of await source.closedFiles()) offered.push({ source, file });
    stats.filesWaiting = offered.length;
    const keys = new Map<string, string>();
    // A file that cannot be shipped for a reason of its own (unreadable, or its key taken) stays on disk, loudly, and the
    // files after it still go; an error of S3's (upload, HEAD) ends the round: the next file would meet the same S3.
    const skip = (file: string, err: unknown) => {
      stats.lastError = `${new Date(now()).toISOString()} ${(err as Error).message}`;
      log.error({ err, code: errorCode(err), file }, 'file not shipped; it stays on disk and is tried again next round');
    };
    for (const { source, file } of offered) {
      if (closed) return;
      if (!(await exists(file))) {
        // Gone between the listing and now (its source removed it): nothing to ship, nothing lost here.
        log.warn({ file }, 'offered file vanished before shipping');
        stats.filesWaiting = Math.max(0, stats.filesWaiting - 1);
        continue;
      }
      const key = await keyFor(source, file);
      const other = keys.get(key);
      if (other !== undefined && other !== file) {
        // Two sources naming files alike: the second must not overwrite the first.
        skip(file, new VolleyError('ES3KEY', `${file} and ${other} would both be s3://${config.bucket}/${key}`));
        continue;
      }
      keys.set(key, file);
      let prepared: Prepared;
      try {
        prepared = await prepare(file);
      } catch (err) {
        if (closed) return;
        skip(file, err);
        continue;
      }
      await shipOne(source, file, key, prepared);
    }
  }

  function schedule(delayMs: number): void {
    if (closed || !started) return;
    cancelTimer = setTimer(() => {
      cancelTimer = undefined;
      void shipNow();
    }, delayMs);
  }

  function shipNow(): Promise<void> {
    if (round) return round;
    if (closed) return Promise.resolve();
    cancelTimer?.();
    cancelTimer = undefined;
    round = runRound()
      .then(
        () => {
          stats.failures = 0;
          schedule(config.intervalMs);
        },
        (err: unknown) => {
          if (closed) return;
          stats.failures += 1;
          stats.lastError = `${new Date(now()).toISOString()} ${(err as Error).message}`;
          // Doubling from the interval, capped, jittered so a fleet coming back from an S3 outage does not return all at once.
          const ceiling = Math.min(config.intervalMs * 2 ** stats.failures, Math.max(MAX_BACKOFF_MS, config.intervalMs));
          const delay = Math.round(ceiling * (0.5 + random() / 2));
          log.warn({ err, code: errorCode(err), failures: stats.failures, retryInMs: delay, waiting: stats.filesWaiting }, 's3 shipping failed; nothing deleted, retrying later');
          schedule(delay);
        },
      )
      .finally(() => {
        round = undefined;
      });
    return round;
  }

  return {
    start(): void {
      if (started || closed) return;
      started = true;
      // Leftovers of a gzip interrupted by a crash: the source still has every file they came from.
      void readdir(stagingDir)
        .then((names) => Promise.all(names.map((n) => rm(join(stagingDir, n), { force: true }))))
        .catch(() => undefined)
        .finally(() => void shipNow());
    },
    shipNow,
    async close(): Promise<void> {
      closed = true;
      cancelTimer?.();
      cancelTimer = undefined;
      abort.abort();
      await round?.catch(() => undefined);
      client.destroy();
    },
    stats: () => ({ ...stats }),
    async unshipped(): Promise<number> {
      let n = 0;
      for (const source of sources) n += (await source.closedFiles()).length;
      return n;
    },
  };
}
