// What the mirror replicates under a persistent path, and how each file is
// compared. Append-only files (spool segments `*.seg`, event-log and attempt
// files `*.jsonl`) are shipped as (offset, bytes) and compared by size plus a
// checksum of their last block: a prefix the MTA never rewrites only grows,
// so equal last blocks at equal sizes mean equal files unless a history
// diverged. Every other file is small and rewritten whole (cursors, node-id,
// drain/seen.log, shipped.json, tls/...): compared and shipped whole.
// Never replicated: the mirror's own folder (each node's role and epoch are
// its own), the MTA's lock (it names a local pid), the spool's disk reserve
// (`reserve/w<N>`: preallocated free space each node's MTA makes for itself),
// temporary files, and a SQLite file's -wal/-shm/-journal: a SQLite file being
// written (the events sink's `.open.sqlite`, in WAL mode) is shipped as one
// consistent snapshot SQLite makes of it (sqliteSnapshot), never as its
// database and WAL copied apart at different moments (a checkpoint between
// the two reads leaves a copy that misses rows or does not open).
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import { copyFile, mkdir, open, readFile, rm } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { VolleyError } from '../shared/errors';

export type FileKind = 'append' | 'whole';

/** The last block's length for append files: small enough to read on every change, large enough to span a record or two. */
export const TAIL_BLOCK = 4096;

export interface LocalFile {
  /** Relative to the persistent path, '/'-separated. */
  path: string;
  size: number;
  mtimeMs: number;
  ino: number;
  kind: FileKind;
}

const APPEND_RE = /\.(seg|jsonl)$/;
const SQLITE_SIDECAR_RE = /\.sqlite-(wal|shm|journal)$/;

/** A SQLite database's files beside it (`<file>-wal`, …): stale ones next to a newer copy would be replayed into it. */
export const SQLITE_SIDECARS = ['-wal', '-shm', '-journal'];

/**
 * A SQLite database in use: being written (the sink's `.open.sqlite`), or
 * with a WAL or rollback journal beside it. Its bytes on disk alone are not
 * a consistent database: it is shipped as a snapshot. A closed one (no
 * journal, never written again) is copied byte for byte like any small file.
 */
export function sqliteInUse(file: string): boolean {
  if (!file.endsWith('.sqlite')) return false;
  return file.endsWith('.open.sqlite') || existsSync(`${file}-wal`) || existsSync(`${file}-journal`);
}

/**
 * What changed in a SQLite database in use: a commit in WAL mode touches
 * only the -wal, so the database's own mtime does not show it.
 */
export function sqliteVersion(file: string): string | undefined {
  const db = statSync(file, { throwIfNoEntry: false });
  if (!db) return undefined;
  const parts: (number | string)[] = [db.ino, db.size, db.mtimeMs];
  for (const side of ['-wal', '-journal']) {
    const s = statSync(`${file}${side}`, { throwIfNoEntry: false });
    parts.push(s ? `${s.ino}:${s.size}:${s.mtimeMs}` : '-');
  }
  return parts.join('/');
}

/** Copies of a database whose WAL restarted during every one of them: held back, tried again at the next scan. */
const SNAPSHOT_ATTEMPTS = 5;

/**
 * A consistent copy of the SQLite database `file` (WAL mode), made without
 * taking any lock on it: a reader's lock would make the sink's rotation
 * (checkpoint, leave WAL mode) fail while the mirror copies. The database
 * file is copied first, then its WAL; a checkpoint writing pages into the
 * database meanwhile only writes pages whose newer frames stay in the WAL
 * until it restarts, so when the WAL's header (its salts) is the same before
 * the database copy, in the WAL copy and after it, the two copies together
 * are one state of the database. SQLite then merges them in `scratch`
 * (recovery keeps the committed transactions only, a frame cut by the copy
 * is dropped) into one file without a WAL. Undefined: the file is gone
 * (rotated: the next scan ships that); 'busy': the WAL restarted during
 * every attempt.
 */
export async function sqliteSnapshot(file: string, scratch: string): Promise<Buffer | undefined | 'busy'> {
  await mkdir(dirname(scratch), { recursive: true });
  const clear = (): Promise<unknown> => Promise.all(['', ...SQLITE_SIDECARS].map((side) => rm(`${scratch}${side}`, { force: true })));
  try {
    for (let attempt = 0; attempt < SNAPSHOT_ATTEMPTS; attempt++) {
      await clear();
      const before = walHeader(`${file}-wal`);
      try {
        await copyFile(file, scratch);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
      try {
        await copyFile(`${file}-wal`, `${scratch}-wal`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      const copied = walHeader(`${scratch}-wal`);
      const after = walHeader(`${file}-wal`);
      if (before !== copied || copied !== after) continue;
      const db = new DatabaseSync(scratch);
      try {
        // Recovery reads the WAL copy's committed frames; leaving WAL mode checkpoints them in and removes it.
        db.exec('PRAGMA journal_mode = DELETE');
      } finally {
        db.close();
      }
      return await readFile(scratch);
    }
    return 'busy';
  } finally {
    await clear();
  }
}

/** A WAL's header (its salts and checkpoint sequence change when it restarts), hex; '' when there is none. */
function walHeader(file: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
  try {
    const buf = Buffer.alloc(32);
    const n = readSync(fd, buf, 0, 32, 0);
    return buf.subarray(0, n).toString('hex');
  } finally {
    closeSync(fd);
  }
}

/** How `rel` is replicated; undefined: not at all. */
export function classify(rel: string): FileKind | undefined {
  const parts = rel.split('/');
  if (parts[0] === 'mirror' || parts[0] === 'reserve' || rel === 'mta.lock') return undefined;
  const name = parts[parts.length - 1];
  if (name.startsWith('.') || name.endsWith('.tmp') || SQLITE_SIDECAR_RE.test(name)) return undefined;
  return APPEND_RE.test(name) ? 'append' : 'whole';
}

/**
 * A path a peer sent, checked before this node writes anything there: relative,
 * normalised, inside the persistent path and one the mirror replicates.
 */
export function checkPeerPath(rel: unknown): string {
  if (typeof rel !== 'string' || rel.length === 0 || rel.length > 1024 || rel.includes('\0') || rel.includes('\\')) throw new VolleyError('EMIRRORPATH', `bad path from the peer: ${JSON.stringify(rel).slice(0, 80)}`);
  if (rel.startsWith('/') || posix.normalize(rel) !== rel || rel.split('/').includes('..')) throw new VolleyError('EMIRRORPATH', `path from the peer is not inside the persistent path: ${rel.slice(0, 80)}`);
  if (!classify(rel)) throw new VolleyError('EMIRRORPATH', `path from the peer is not one the mirror replicates: ${rel.slice(0, 80)}`);
  return rel;
}

/**
 * Every replicated regular file under `root`, by relative path. A file that
 * vanishes mid-scan is simply not there. Synchronous calls: a persistent
 * path holds a few dozen files, and a sync barrier waits for every scan; one
 * readdir or stat on the main thread costs a few µs, a thread-pool trip with
 * its promise several times that in CPU (the primary mirror's profile under
 * sync intake: readdir and stat were a third of its main thread).
 */
export async function scanTree(root: string): Promise<Map<string, LocalFile>> {
  return scanTreeSync(root);
}

export function scanTreeSync(root: string): Map<string, LocalFile> {
  const out = new Map<string, LocalFile>();
  const walk = (dir: string, prefix: string): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    // In readdir order, so a batch that fills up takes files in the same order every time.
    for (const e of entries) {
      const rel = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (rel !== 'mirror' && rel !== 'reserve') walk(join(dir, e.name), rel);
        continue;
      }
      if (!e.isFile()) continue;
      const kind = classify(rel);
      if (!kind) continue;
      const s = statSync(join(dir, e.name), { throwIfNoEntry: false });
      if (s) out.set(rel, { path: rel, size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, kind });
    }
  };
  walk(root, '');
  return out;
}

export function absolute(root: string, rel: string): string {
  return join(root, ...rel.split('/'));
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Up to this many bytes are read with synchronous calls (a tail block and the few records a barrier waits for); more (a resync's batches) goes through the thread pool. */
export const SYNC_READ_MAX = 256 * 1024;

/** Reads `length` bytes at `offset` (fewer if the file is shorter now). */
export async function readRange(file: string, offset: number, length: number): Promise<Buffer> {
  if (length <= SYNC_READ_MAX) return readRangeSync(file, offset, length);
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/** readRange on the main thread: an open, a read or two from the page cache and a close cost less than one thread-pool trip. */
function readRangeSync(file: string, offset: number, length: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = readSync(fd, buf, got, length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/**
 * A whole (small) file's content as one version of it, with that version's
 * identity: read from one open file to its size then, not to the size a scan
 * saw before (a cursor renamed over meanwhile is longer: reading the new one
 * to the old size would ship a torn copy). Undefined when it is gone.
 */
export function readWhole(file: string): { data: Buffer; mtimeMs: number; ino: number } | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const s = fstatSync(fd);
    const buf = Buffer.allocUnsafe(s.size);
    let got = 0;
    while (got < s.size) {
      const n = readSync(fd, buf, got, s.size - got, got);
      if (n === 0) break;
      got += n;
    }
    return { data: buf.subarray(0, got), mtimeMs: s.mtimeMs, ino: s.ino };
  } finally {
    closeSync(fd);
  }
}

/**
 * The checksum two nodes compare for a file at `size`: the last block before
 * `size` for an append file, the whole content for a whole file. Undefined
 * when the file is shorter than `size` now.
 */
export async function fileChecksum(file: string, kind: FileKind, size: number): Promise<string | undefined> {
  const start = kind === 'append' ? Math.max(0, size - TAIL_BLOCK) : 0;
  let data: Buffer;
  try {
    data = await readRange(file, start, size - start);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return data.length === size - start ? sha256(data) : undefined;
}

/** What one node holds, as the other compares it: path -> size and checksum. */
export type Inventory = Record<string, { size: number; sum: string }>;

export async function inventory(root: string): Promise<Inventory> {
  const out: Inventory = {};
  for (const f of (await scanTree(root)).values()) {
    const sum = await fileChecksum(absolute(root, f.path), f.kind, f.size);
    if (sum !== undefined) out[f.path] = { size: f.size, sum };
  }
  return out;
}
