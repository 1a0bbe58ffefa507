// The secondary's half of a replication batch: checks each operation, writes
// the bytes at the same offsets the primary holds them, then makes the whole
// batch durable before the batch is acknowledged as durable: the log bytes
// first, then the small files that may name them, then the deletions. A write whose checksum does
// not match its bytes refuses the batch (nothing is acknowledged, the link
// is dropped and the primary re-sends from the last durable position).
import { closeSync, fdatasync as fdatasyncCb, ftruncateSync, openSync, statSync, writeSync } from 'node:fs';
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { dirname } from 'node:path';
import { VolleyError } from '../shared/errors';
import { writeFully } from '../shared/durable-file';
import { SQLITE_SIDECARS, absolute, checkPeerPath, sha256 } from './files';
import { fsyncDir } from './state';

export type BatchOp =
  | { op: 'write'; path: string; offset: number; len: number; sha256: string }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'replace'; path: string; len: number; sha256: string }
  | { op: 'delete'; path: string };

/** Checks a batch's header ops against its body: every field typed, lengths adding up to the body. */
export function parseOps(raw: unknown, bodyLength: number): BatchOp[] {
  if (!Array.isArray(raw)) throw new VolleyError('EMIRRORBATCH', 'batch without ops');
  let total = 0;
  const nat = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
  const ops = raw.map((o: Record<string, unknown>): BatchOp => {
    const path = checkPeerPath(o?.path);
    if (o.op === 'write' && nat(o.offset) && nat(o.len) && typeof o.sha256 === 'string') {
      total += o.len;
      return { op: 'write', path, offset: o.offset, len: o.len, sha256: o.sha256 };
    }
    if (o.op === 'replace' && nat(o.len) && typeof o.sha256 === 'string') {
      total += o.len;
      return { op: 'replace', path, len: o.len, sha256: o.sha256 };
    }
    if (o.op === 'truncate' && nat(o.size)) return { op: 'truncate', path, size: o.size };
    if (o.op === 'delete') return { op: 'delete', path };
    throw new VolleyError('EMIRRORBATCH', `bad batch op ${JSON.stringify(o).slice(0, 80)}`);
  });
  if (total !== bodyLength) throw new VolleyError('EMIRRORBATCH', `batch ops carry ${total} bytes, the body has ${bodyLength}`);
  return ops;
}

const fdatasync = promisify(fdatasyncCb);

/**
 * Applies `ops` under `root` and makes them durable; resolves once everything
 * is on disk. The appended bytes of a sync barrier's batch are a few KB: they
 * are written with synchronous calls (open, pwrite, close: the page cache, a
 * few µs each, against a thread-pool trip and a promise each, which cost the
 * secondary more CPU than the writes), and only the fdatasyncs, which wait for
 * the disk, go to the thread pool, side by side.
 *
 * Order on disk: a small file may name positions in a log (a sink's cursor),
 * and a deletion may be what a small file allows (an event file retention
 * removed once every cursor passed it). So the log bytes and the small files'
 * new contents (in temporary files) are fdatasynced first; only then are the
 * small files renamed in (their directories fsynced), and only then are files
 * deleted (directories fsynced again). A power cut at any point leaves small
 * files that say no more than the log bytes that survived.
 */
export async function applyBatch(root: string, ops: BatchOp[], body: Buffer = Buffer.alloc(0)): Promise<void> {
  checkPositions(root, ops);
  const fds = new Map<string, number>();
  const dirs = new Set<string>();
  /** Small files written to their temporary file, renamed in once the log bytes are durable. */
  const swaps = new Map<string, { tmp: string; fh: FileHandle | undefined }>();
  /** Files deleted once the swaps are durable. */
  const deletes = new Set<string>();
  let at = 0;
  const fdOf = async (rel: string): Promise<number> => {
    let fd = fds.get(rel);
    if (fd !== undefined) return fd;
    // Written after the batch deleted or swapped it: that op goes first, as the batch orders them.
    if (deletes.delete(rel)) {
      await rm(absolute(root, rel), { force: true });
      dirs.add(dirname(absolute(root, rel)));
    }
    const swap = swaps.get(rel);
    if (swap) {
      await swap.fh?.sync();
      await swap.fh?.close();
      swaps.delete(rel);
      await rename(swap.tmp, absolute(root, rel));
      dirs.add(dirname(absolute(root, rel)));
    }
    const file = absolute(root, rel);
    // 'a+' would ignore positions on Linux: open for read-write, creating it
    // (and its folders) first if needed. Folders only then: a file that exists
    // (nearly every write) costs no mkdir.
    try {
      fd = openSync(file, 'r+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await makeDirs(dirname(file));
      dirs.add(dirname(file));
      fd = openSync(file, 'w+');
    }
    fds.set(rel, fd);
    return fd;
  };
  const closeFd = (rel: string): void => {
    const fd = fds.get(rel);
    if (fd === undefined) return;
    fds.delete(rel);
    closeSync(fd);
  };
  const closeSwap = async (rel: string): Promise<void> => {
    const swap = swaps.get(rel);
    const fh = swap?.fh;
    if (swap) swap.fh = undefined;
    await fh?.close();
  };
  // A directory created here is an entry in its parent: that parent is fsynced with the batch too.
  const makeDirs = async (dir: string): Promise<void> => {
    const first = await mkdir(dir, { recursive: true });
    if (first === undefined) return;
    dirs.add(dirname(first));
    for (let d = dir; d.length >= first.length; d = dirname(d)) dirs.add(d);
  };
  const syncDirs = (): void => {
    for (const d of dirs) fsyncDir(d);
    dirs.clear();
  };
  let done = false;
  try {
    for (const op of ops) {
      if (op.op === 'write' || op.op === 'replace') {
        const data = body.subarray(at, at + op.len);
        at += op.len;
        if (sha256(data) !== op.sha256) throw new VolleyError('EMIRRORSUM', `checksum mismatch for ${op.path}: the batch is refused`);
        if (op.op === 'write') {
          const fd = await fdOf(op.path);
          if (data.length > 0) writeFullySync(fd, data, op.offset);
        } else {
          // Whole files are swapped in by rename, so the MTA started here later sees the old or the new, never half.
          closeFd(op.path);
          deletes.delete(op.path);
          await closeSwap(op.path);
          const file = absolute(root, op.path);
          await makeDirs(dirname(file));
          const tmp = `${file}.mirror.tmp`;
          const fh = await open(tmp, 'w');
          swaps.set(op.path, { tmp, fh });
          await writeFully(fh, [data], 0);
        }
      } else if (op.op === 'truncate') {
        ftruncateSync(await fdOf(op.path), op.size);
      } else {
        closeFd(op.path);
        const swap = swaps.get(op.path);
        if (swap) {
          await closeSwap(op.path);
          swaps.delete(op.path);
          await rm(swap.tmp, { force: true });
        }
        deletes.add(op.path);
      }
    }
    // Side by side: the disk takes them as one queue, and a sync barrier waits
    // for the slowest, not the sum. fdatasync: the appended bytes and the new
    // size, without the timestamps nobody reads.
    await Promise.all([...[...fds.values()].map((fd) => fdatasync(fd)), ...[...swaps.values()].map((s) => (s.fh ? fdatasync(s.fh.fd) : undefined))]);
    for (const rel of swaps.keys()) await closeSwap(rel);
    done = true;
  } finally {
    for (const rel of [...fds.keys()]) {
      try {
        closeFd(rel);
      } catch {
        // closing is best effort once the batch failed or is durable
      }
    }
    if (!done) {
      for (const [rel, swap] of swaps) {
        // A refused batch leaves no temporary file behind (nor swaps it in).
        await closeSwap(rel).catch(() => undefined);
        await rm(swap.tmp, { force: true }).catch(() => undefined);
      }
    }
  }
  // The log bytes (and the new files' entries) are durable: now the small files that may name them.
  if (swaps.size > 0) {
    syncDirs();
    // In the batch's order, each folder's renames durable before the next
    // folder's: a SQLite snapshot goes before the sink cursor that counts its rows.
    let last: string | undefined;
    for (const [rel, swap] of swaps) {
      const file = absolute(root, rel);
      if (last !== undefined && last !== dirname(file)) syncDirs();
      await dropSqliteSidecars(file);
      await rename(swap.tmp, file);
      last = dirname(file);
      dirs.add(last);
    }
  }
  // The swaps are durable: now the deletions they may allow.
  if (deletes.size > 0) {
    syncDirs();
    for (const rel of deletes) {
      await rm(absolute(root, rel), { force: true });
      await dropSqliteSidecars(absolute(root, rel));
      dirs.add(dirname(absolute(root, rel)));
    }
  }
  syncDirs();
}

/**
 * A SQLite database arrives as one consistent snapshot: a -wal or journal
 * left beside the old copy (by an MTA that ran here, or an older mirror that
 * copied them) would be replayed into the new one when it is opened.
 */
async function dropSqliteSidecars(file: string): Promise<void> {
  if (!file.endsWith('.sqlite')) return;
  for (const side of SQLITE_SIDECARS) await rm(`${file}${side}`, { force: true });
}

/**
 * Before anything is written: every write starts where its file ends (after
 * the batch's earlier ops), and no truncate lengthens a file. A write past the
 * end (or a lengthening truncate) would leave a hole of zeros where the
 * primary has bytes (EMIRRORGAP); one before the end would overwrite bytes
 * this node holds that the primary never sent, such as mail an MTA accepted
 * on this path while it was a secondary (EMIRROROWN). Either way the batch is
 * refused whole and the link is dropped: the next session starts from this
 * node's inventory.
 */
function checkPositions(root: string, ops: BatchOp[]): void {
  const sizes = new Map<string, number>();
  const sizeOf = (rel: string): number => sizes.get(rel) ?? statSync(absolute(root, rel), { throwIfNoEntry: false })?.size ?? 0;
  for (const op of ops) {
    if (op.op === 'write') {
      const size = sizeOf(op.path);
      if (op.offset > size) throw new VolleyError('EMIRRORGAP', `${op.path}: the primary writes at ${op.offset}, this node holds ${size} bytes: the batch is refused (it would leave a hole)`);
      if (op.offset < size) throw new VolleyError('EMIRROROWN', `${op.path}: the primary writes at ${op.offset}, this node holds ${size} bytes it never sent: the batch is refused`);
      sizes.set(op.path, op.offset + op.len);
    } else if (op.op === 'truncate') {
      const size = sizeOf(op.path);
      if (op.size > size) throw new VolleyError('EMIRRORGAP', `${op.path}: the primary cuts it to ${op.size} bytes, this node holds ${size}: the batch is refused (it would leave a hole)`);
      sizes.set(op.path, op.size);
    } else sizes.set(op.path, op.op === 'replace' ? op.len : 0);
  }
}

/** All of `data` at `position`; a write that makes no progress is ENOSPC (a filling disk shows as short writes first). */
function writeFullySync(fd: number, data: Buffer, position: number): void {
  let written = 0;
  while (written < data.length) {
    const n = writeSync(fd, data, written, data.length - written, position + written);
    if (n === 0) throw new VolleyError('ENOSPC', `short write: ${written} of ${data.length} bytes`);
    written += n;
  }
}
