// The primary's half of one replication session. It compares the
// secondary's inventory with the local files once (catch-up: resume each
// file from the secondary's own size when their last blocks agree, a full
// copy when they do not or when the secondary holds more than the primary),
// then tails the persistent path: new bytes of append-only files as
// (file, offset, bytes), small files whole when they change, truncations and
// deletions as they happen. One batch is in flight at a time; the secondary
// answers it with a durable ack after its fsync, which moves the acked
// positions that lag and caught-up are measured against.
//
// The primary reads up to each file's current size: bytes the MTA has
// written; the spool's group commit makes them durable within milliseconds,
// and a torn tail the MTA later cuts on restart arrives here as a truncation
// the secondary follows.
import { statSync } from 'node:fs';
import { VolleyError } from '../shared/errors';
import { DEFAULT_MAX_FRAME } from '../shared/proxy-protocol/codec';
import type { BatchOp } from './apply';
import { TAIL_BLOCK, absolute, classify, fileChecksum, readRange, readWhole, scanTree, sha256, sqliteInUse, sqliteSnapshot, sqliteVersion, type FileKind, type Inventory, type LocalFile } from './files';

interface Tracked {
  kind: FileKind;
  /** Bytes sent (append) / the content's checksum sent (whole). */
  sent: number;
  sentSum?: string;
  /** Bytes the secondary holds durably (append); whole: the checksum it holds. */
  acked: number;
  ackedSum?: string;
  /** Checksum of the last block before `sent`, as sent: a different one on disk means the history changed. */
  tail?: string;
  mtimeMs: number;
  ino: number;
  /** A full copy in progress: its bytes go at `resync_rate`. */
  full: boolean;
  /** The secondary's copy must be emptied first (a new file, or a full copy over a diverged one). */
  truncate?: boolean;
  /** A SQLite database in use: the version (its and its WAL's sizes and times) last snapshotted. */
  version?: string;
  /** A SQLite database in use: when it was last snapshotted (this.now()). */
  snapshotAt?: number;
}

/** The least time between two copies of one SQLite database in use (see snapshotChangedDatabases). */
export const SQLITE_SNAPSHOT_MIN_MS = 1_000;

/**
 * The cursor file of the sink that writes `dbPath`, when it is in the sink's
 * default folder (`events/sqlite/<name>/`, cursors in `log/events/cursors/`,
 * runtime/mta/events); undefined otherwise.
 */
function sinkCursorOf(dbPath: string): string | undefined {
  // The sink names its files `<name>.<start>…`: a folder of that name holding another's is a custom `dir`, not guessed.
  const m = /^events\/sqlite\/([^/]+)\/([^/]+)$/.exec(dbPath);
  return m && m[2].startsWith(`${m[1]}.`) ? `log/events/cursors/${m[1]}.json` : undefined;
}

/** What a batch frame keeps for its header (the ops: a line of JSON per file) besides the files' bytes. */
export const FRAME_HEADER_ROOM = 1024 * 1024;

export interface SenderOptions {
  root: string;
  batchMaxBytes: number;
  resyncRateBytes: number;
  now?: () => number;
  /** The link's frame limit (the peer drops a longer frame): DEFAULT_MAX_FRAME; tests lower it. */
  frameMaxBytes?: number;
}

export interface Batch {
  ops: BatchOp[];
  body: Buffer;
  /** Positions the batch moves, applied when its durable ack comes back. */
  moves: { path: string; sent: number; sentSum?: string; deleted?: boolean }[];
  /** When the files were looked at, and whether the batch carries every change seen then (no size or rate limit held any back). */
  scannedAt: number;
  complete: boolean;
  /** It rewrites a file the secondary held (a full copy of a diverged history): the secondary is not caught up until the primary says so again. */
  resync?: boolean;
}

export interface SenderStats {
  lagBytes: number;
  lagSeconds: number;
  caughtUp: boolean;
  fullResyncs: number;
  bytesSent: number;
  files: number;
  /** Whole files larger than a frame can carry: never sent (see Sender.refused), left out of the lag. */
  refused: { path: string; size: number }[];
  /**
   * Everything the primary's files held at this time is durable on the
   * secondary: a message whose 250 came before it survives a failover.
   */
  durableThrough?: number;
}

export class Sender {
  private readonly files = new Map<string, Tracked>();
  /** Files the secondary has that the primary does not: deleted in the first batches. */
  private readonly orphans = new Set<string>();
  private budget: number;
  private lastRefill: number;
  private readonly now: () => number;
  private oldestUnacked?: number;
  private lastLag = 0;
  private scanned = false;
  private durableThrough?: number;
  fullResyncs = 0;
  bytesSent = 0;
  /**
   * A batch's room for log bytes and the small files that fit beside them,
   * and the largest small file, which may go alone on top (see next()):
   * together no more than a frame carries.
   */
  private readonly logMax: number;
  private readonly wholeMax: number;
  /**
   * Whole files larger than wholeMax, by path (their size): a frame carrying
   * one would be longer than the peer takes, so it would drop the link at
   * every try and nothing after it would ever replicate. Refused instead,
   * reported (the daemon logs each, status and metrics count them), and
   * tried again when the file changes.
   */
  private readonly refused = new Map<string, number>();

  constructor(private readonly options: SenderOptions) {
    this.now = options.now ?? Date.now;
    const bodyMax = Math.max(2, (options.frameMaxBytes ?? DEFAULT_MAX_FRAME) - FRAME_HEADER_ROOM);
    this.logMax = Math.min(options.batchMaxBytes, Math.floor(bodyMax / 2));
    this.wholeMax = bodyMax - this.logMax;
    this.lastRefill = this.now();
    this.budget = options.resyncRateBytes;
  }

  /** The catch-up plan: what the secondary already holds, file by file. */
  async start(peer: Inventory): Promise<void> {
    const local = await scanTree(this.options.root);
    for (const [path, theirs] of Object.entries(peer)) {
      const mine = local.get(path);
      if (!mine) {
        this.orphans.add(path);
        continue;
      }
      const ours = theirs.size <= mine.size ? await fileChecksum(this.abs(path), mine.kind, theirs.size) : undefined;
      const same = ours === theirs.sum;
      if (mine.kind === 'append') {
        if (same) this.files.set(path, { kind: 'append', sent: theirs.size, acked: theirs.size, tail: ours, mtimeMs: -1, ino: mine.ino, full: false });
        else this.startFull(path, mine);
      } else {
        // A whole file the secondary holds already is not sent again.
        this.files.set(path, { kind: 'whole', sent: 0, acked: 0, sentSum: same ? theirs.sum : undefined, ackedSum: same ? theirs.sum : undefined, mtimeMs: -1, ino: mine.ino, full: false });
      }
    }
    for (const dir of lostPositions(peer, local)) {
      // The secondary's position in this log is gone (its last file rotated away here): every live file it lacks is a full copy, at resync_rate.
      for (const mine of local.values()) {
        if (mine.kind === 'append' && !(mine.path in peer) && parentOf(mine.path) === dir) this.startFull(mine.path, mine);
      }
    }
  }

  /** The next batch to send, or undefined when the secondary holds everything the primary has. */
  async next(): Promise<Batch | undefined> {
    this.refill();
    const scannedAt = this.now();
    const local = await scanTree(this.options.root);
    const batch: Batch = { ops: [], body: Buffer.alloc(0), moves: [], scannedAt, complete: true };
    const bodies: Buffer[] = [];
    let room = this.logMax;
    for (const path of this.orphans) {
      batch.ops.push({ op: 'delete', path });
      batch.moves.push({ path, sent: 0, deleted: true });
    }
    this.orphans.clear();
    for (const path of this.files.keys()) {
      if (local.has(path)) continue;
      this.refused.delete(path);
      batch.ops.push({ op: 'delete', path });
      batch.moves.push({ path, sent: 0, deleted: true });
      this.files.delete(path);
    }
    // Small files first, and the logs sized after them: a small file may name
    // positions in a log (a sink's cursor: {file, offset}), and one that reached
    // the secondary ahead of the log bytes it names would, after a promotion,
    // make the sink skip the events the new primary writes at those offsets.
    // SQLite databases in use after the other small files: a snapshot taken
    // after a sink's cursor was read holds every row that cursor counts. They
    // go first in the batch, so the secondary renames them in before the cursors.
    const small = this.readChangedWholeFiles(local);
    // An event file deleted (retention: every cursor passed it) must not reach the secondary
    // while a cursor there still points into it: no copy is put off in such a batch.
    const deletesEvents = batch.ops.some((o) => o.op === 'delete' && o.path.startsWith('log/events/'));
    const databases = await this.snapshotChangedDatabases(local, !deletesEvents);
    if (databases === 'busy') {
      // No snapshot now: the cursors that may count its rows wait with it (read again at the next scan).
      for (const w of small) w.t.mtimeMs = -1;
      small.length = 0;
      batch.complete = false;
    } else {
      // A sink whose database changed but is not copied again yet (SQLITE_SNAPSHOT_MIN_MS): its
      // cursor waits for that copy, and the batch is still complete. Behind its database on the
      // secondary, a cursor only makes the promoted sink write again rows it ignores (INSERT OR
      // IGNORE on event_id); ahead of it, rows would be lost.
      for (let i = small.length - 1; i >= 0; i--) {
        if (!databases.deferred.has(small[i].path)) continue;
        small[i].t.mtimeMs = -1;
        small.splice(i, 1);
      }
      small.unshift(...databases.taken);
    }
    for (const scanned of local.values()) {
      if (scanned.kind !== 'append') continue;
      if (room <= 0) {
        batch.complete = false;
        break;
      }
      // Sized now, after the small files were read: every byte they may name is counted.
      const now = statSync(this.abs(scanned.path), { throwIfNoEntry: false });
      if (!now) continue; // gone: the next scan sends the deletion
      const f: LocalFile = { ...scanned, size: now.size, mtimeMs: now.mtimeMs, ino: now.ino };
      let t = this.files.get(f.path);
      if (!t) {
        t = { kind: f.kind, sent: 0, acked: 0, mtimeMs: -1, ino: f.ino, full: false, truncate: true };
        this.files.set(f.path, t);
      }
      /** The file's bytes from `start`, read once above for the tail check. */
      let ahead: { start: number; data: Buffer } | undefined;
      if (f.size < t.sent) {
        // The MTA cut a torn tail (or the file was rewritten): the secondary follows the truncation.
        batch.ops.push({ op: 'truncate', path: f.path, size: f.size });
        t.sent = f.size;
        t.tail = await fileChecksum(this.abs(f.path), 'append', f.size);
        batch.moves.push({ path: f.path, sent: f.size });
      } else if ((f.size > t.sent || f.mtimeMs !== t.mtimeMs || f.ino !== t.ino) && t.sent > 0 && !t.full) {
        // One read for the check of the last block sent and the new bytes
        // after it: a sync barrier waits for this scan, and each open, read
        // and close is a thread-pool trip.
        const start = Math.max(0, t.sent - TAIL_BLOCK);
        const upTo = f.size > t.sent ? Math.min(f.size, t.sent + Math.max(0, room)) : t.sent;
        const read = await readRange(this.abs(f.path), start, upTo - start).catch(ignoreMissing);
        const tail = read && read.length >= t.sent - start ? sha256(read.subarray(0, t.sent - start)) : undefined;
        if (!read || tail !== t.tail) {
          // Bytes already sent changed under us (or the file went): this file's history diverged.
          t = this.startFull(f.path, f);
        } else ahead = { start, data: read };
      }
      if (t.full) batch.resync = true;
      if (t.truncate) {
        batch.ops.push({ op: 'truncate', path: f.path, size: 0 });
        batch.moves.push({ path: f.path, sent: 0 });
        t.truncate = false;
      }
      t.mtimeMs = f.mtimeMs;
      t.ino = f.ino;
      if (f.size <= t.sent) {
        if (t.full) t.full = false;
        continue;
      }
      let want = Math.min(f.size - t.sent, room);
      if (t.full) want = Math.min(want, Math.floor(this.budget));
      if (want < f.size - t.sent) batch.complete = false;
      if (want <= 0) continue;
      const from = t.sent;
      const data = ahead && !t.full ? ahead.data.subarray(from - ahead.start, from - ahead.start + want) : await readRange(this.abs(f.path), from, want).catch(() => undefined);
      if (!data || data.length === 0) continue;
      batch.ops.push({ op: 'write', path: f.path, offset: t.sent, len: data.length, sha256: sha256(data) });
      bodies.push(data);
      if (t.full) this.budget -= data.length;
      t.sent += data.length;
      // The last block before the new end, from bytes already in memory when they cover it.
      const blockAt = Math.max(0, t.sent - TAIL_BLOCK);
      if (ahead && !t.full) t.tail = sha256(ahead.data.subarray(blockAt - ahead.start, t.sent - ahead.start));
      else if (blockAt >= from) t.tail = sha256(data.subarray(blockAt - from));
      else t.tail = await fileChecksum(this.abs(f.path), 'append', t.sent);
      if (t.full && t.sent >= f.size) t.full = false;
      batch.moves.push({ path: f.path, sent: t.sent });
      room -= data.length;
    }
    // The small files go only with every log byte seen after they were read;
    // held back otherwise (read again at the next scan). One that does not fit
    // in the room the logs left goes anyway, one such a batch: on a busy
    // primary every scan finds new log bytes, so a report in
    // inbound/unmatched/ larger than batch_max minus them would otherwise
    // never go, the lag never reach 0, and (mode sync) no barrier be answered.
    let oversize = false;
    for (const w of small) {
      const fits = w.data.length <= room;
      if (batch.complete && (fits || !oversize)) {
        if (!fits) oversize = true;
        batch.ops.push({ op: 'replace', path: w.path, len: w.data.length, sha256: w.sum });
        bodies.push(w.data);
        batch.moves.push({ path: w.path, sent: w.data.length, sentSum: w.sum });
        w.t.sentSum = w.sum;
        room -= w.data.length;
      } else {
        batch.complete = false;
        w.t.mtimeMs = -1;
        // A database snapshot held back is taken again next scan: left "snapshotted", it would be
        // skipped until the sink wrote again, while its cursor (read again) went ahead of its rows.
        w.t.version = undefined;
        w.t.snapshotAt = undefined;
      }
    }
    this.scanned = true;
    this.measure(local);
    if (batch.ops.length === 0) {
      if (this.lastLag === 0) this.durableThrough = scannedAt;
      return undefined;
    }
    batch.body = Buffer.concat(bodies);
    this.bytesSent += batch.body.length;
    return batch;
  }

  /** The whole files changed since they were last sent, read now (tracking new ones). */
  private readChangedWholeFiles(local: Map<string, LocalFile>): { path: string; t: Tracked; data: Buffer; sum: string }[] {
    const out: { path: string; t: Tracked; data: Buffer; sum: string }[] = [];
    for (const f of local.values()) {
      if (f.kind !== 'whole') continue;
      let t = this.files.get(f.path);
      if (!t) {
        t = { kind: 'whole', sent: 0, acked: 0, mtimeMs: -1, ino: f.ino, full: false };
        this.files.set(f.path, t);
      }
      if (t.mtimeMs === f.mtimeMs && t.ino === f.ino && t.sentSum !== undefined) continue;
      if (sqliteInUse(this.abs(f.path))) continue;
      if (this.refuse(f.path, f.size)) continue;
      const read = readWhole(this.abs(f.path));
      if (!read) continue;
      const { data } = read;
      if (this.refuse(f.path, data.length)) continue;
      // The identity of the version read: a newer one renamed over it since is read at the next scan.
      t.mtimeMs = read.mtimeMs;
      t.ino = read.ino;
      const sum = sha256(data);
      if (sum !== t.sentSum) out.push({ path: f.path, t, data, sum });
    }
    return out;
  }

  /**
   * SQLite databases in use that changed since last sent (their WAL
   * included), each as one consistent snapshot; `deferred`: the cursor
   * files of sinks whose database changed but was copied less than
   * SQLITE_SNAPSHOT_MIN_MS ago. Each copy is the whole database: taken at
   * every scan under load it would cost its size per batch (a 100 MB file,
   * every few milliseconds); at most once a second it costs that a second.
   */
  private async snapshotChangedDatabases(local: Map<string, LocalFile>, mayDefer: boolean): Promise<{ taken: { path: string; t: Tracked; data: Buffer; sum: string }[]; deferred: Set<string> } | 'busy'> {
    const taken: { path: string; t: Tracked; data: Buffer; sum: string; version: string }[] = [];
    const deferred = new Set<string>();
    for (const f of local.values()) {
      const file = this.abs(f.path);
      if (f.kind !== 'whole' || !sqliteInUse(file)) continue;
      const t = this.files.get(f.path);
      if (!t) continue; // tracked by readChangedWholeFiles
      // Seen before the snapshot: a commit after it changes the version again.
      const version = sqliteVersion(file);
      if (version === undefined || (version === t.version && t.sentSum !== undefined)) continue;
      // Only a sink in its default folder has a cursor known here to hold back; any other is copied at every change.
      const cursor = sinkCursorOf(f.path);
      if (mayDefer && cursor && t.snapshotAt !== undefined && this.now() - t.snapshotAt < SQLITE_SNAPSHOT_MIN_MS) {
        deferred.add(cursor);
        continue;
      }
      if (this.refuse(f.path, f.size)) continue;
      const data = await sqliteSnapshot(file, absolute(this.options.root, 'mirror/sqlite-snapshot.tmp'));
      if (data === 'busy') return 'busy';
      if (data && this.refuse(f.path, data.length)) continue;
      if (data) taken.push({ path: f.path, t, data, sum: sha256(data), version });
    }
    for (const d of taken) {
      d.t.version = d.version;
      d.t.mtimeMs = -1;
      d.t.snapshotAt = this.now();
    }
    return { taken: taken.filter((d) => d.sum !== d.t.sentSum), deferred };
  }

  /** The secondary holds `batch` durably. */
  acked(batch: Batch): void {
    // What is still unacked was seen at the next scan at the earliest: lag seconds restart from there.
    this.oldestUnacked = undefined;
    if (batch.complete) this.durableThrough = Math.max(this.durableThrough ?? 0, batch.scannedAt);
    for (const m of batch.moves) {
      if (m.deleted) continue;
      const t = this.files.get(m.path);
      if (!t) continue;
      if (t.kind === 'append') t.acked = Math.min(m.sent, t.sent);
      else t.ackedSum = m.sentSum;
    }
  }

  stats(): SenderStats {
    const full = [...this.files.values()].some((t) => t.full);
    return {
      lagBytes: this.lastLag,
      lagSeconds: this.oldestUnacked === undefined ? 0 : Math.max(0, (this.now() - this.oldestUnacked) / 1000),
      caughtUp: this.scanned && this.lastLag === 0 && !full && this.orphans.size === 0,
      fullResyncs: this.fullResyncs,
      bytesSent: this.bytesSent,
      files: this.files.size,
      refused: [...this.refused].map(([path, size]) => ({ path, size })),
      ...(this.durableThrough !== undefined ? { durableThrough: this.durableThrough } : {}),
    };
  }

  /** Bytes on this node the secondary does not hold durably yet, and since when there have been some. */
  private measure(local: Map<string, LocalFile>): void {
    let lag = 0;
    for (const f of local.values()) {
      if (this.refused.has(f.path)) continue;
      const t = this.files.get(f.path);
      if (!t) lag += f.size;
      else if (t.kind === 'append') lag += Math.max(0, f.size - t.acked);
      else if (t.ackedSum === undefined || t.ackedSum !== t.sentSum) lag += f.size;
    }
    this.lastLag = lag;
    if (lag === 0) this.oldestUnacked = undefined;
    else this.oldestUnacked ??= this.now();
  }

  /** True (and recorded) when a whole file of `size` bytes cannot go in one frame; a file back under the limit is tried again. */
  private refuse(path: string, size: number): boolean {
    if (size <= this.wholeMax) {
      this.refused.delete(path);
      return false;
    }
    this.refused.set(path, size);
    return true;
  }

  private startFull(path: string, f: LocalFile): Tracked {
    this.fullResyncs++;
    const t: Tracked = { kind: 'append', sent: 0, acked: 0, mtimeMs: f.mtimeMs, ino: f.ino, full: true, truncate: true };
    this.files.set(path, t);
    return t;
  }

  private refill(): void {
    const now = this.now();
    const rate = this.options.resyncRateBytes;
    // At most one second's worth banked, so a pause does not become a burst.
    this.budget = Math.min(rate, this.budget + ((now - this.lastRefill) / 1000) * rate);
    this.lastRefill = now;
  }

  private abs(path: string): string {
    if (!path) throw new VolleyError('EMIRRORPATH', 'empty path');
    return absolute(this.options.root, path);
  }
}

/** A file gone meanwhile reads as nothing (the next scan sees it deleted); any other error stands. */
function ignoreMissing(err: NodeJS.ErrnoException): undefined {
  if (err.code === 'ENOENT') return undefined;
  throw err;
}

function parentOf(path: string): string {
  return path.slice(0, Math.max(0, path.lastIndexOf('/')));
}

/**
 * Folders of append files (a spool partition, an event log) where the
 * secondary's last file is one the primary no longer has: where it stopped
 * was deleted (the segments rotated away), so it cannot resume there.
 */
function lostPositions(peer: Inventory, local: Map<string, LocalFile>): Set<string> {
  const last = new Map<string, string>();
  for (const path of Object.keys(peer)) {
    if (classify(path) !== 'append') continue;
    const dir = parentOf(path);
    if ((last.get(dir) ?? '') < path) last.set(dir, path);
  }
  return new Set([...last].filter(([, path]) => !local.has(path)).map(([dir]) => dir));
}
