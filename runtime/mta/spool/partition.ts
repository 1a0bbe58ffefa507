import { EventEmitter } from 'node:events';
import { mkdir, open, readdir, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { VolleyError, errorCode } from '../../shared/errors';
import { HEADER_SIZE, RecordType, frame, messagePayload, splitMessagePayload, parseHeader, checksumOk } from '../../shared/spool-record';
import { readSegment, readSegmentBatches, type RawRecord } from './segment-reader';
import type { DoneRecord, Envelope, Position, SpoolEntry, StateChange } from './types';
import { comparePositions } from './types';
import { durableFlags, writeFully } from '../../shared/durable-file';
import { GroupCommit } from '../../shared/group-commit';
import { SegmentHandles } from './segment-handles';
import type { DiskReserve } from './disk-reserve';

export interface PartitionOptions {
  dir: string;
  segmentSize?: number;
  /** fdatasync before an append resolves. Only tests that measure something else turn it off. */
  fsync?: boolean;
  logger?: Logger;
  /** Bytes of recently accepted bodies kept in memory for delivery (0 turns it off). */
  recentBytes?: number;
  /**
   * The volume's free space and the reserve only state and done records may
   * use: messages are refused below `spool.min_free`, and a state or done
   * record that meets a full disk takes its room from the reserve file.
   */
  reserve?: DiskReserve;
  /**
   * Write, then fdatasync, instead of one O_DSYNC write (with `fsync`). Under
   * a sync HA mirror: between the two the bytes are in the files the mirror
   * reads, so an append's `written` callback can ask for the mirror's barrier
   * then and the secondary's fsync runs alongside the local one instead of
   * after it. Costs one more thread-pool trip per group commit.
   */
  syncAfterWrite?: boolean;
  /** What makes a written batch durable in `syncAfterWrite` mode (default: the segment's fdatasync); tests hold it to see the order. */
  sync?: (fh: FileHandle) => Promise<void>;
}

export interface PartitionStats {
  entries: number;
  segments: number;
  bytes: number;
  commits: number;
  records: number;
}

interface Pending {
  /** Absent for a request to roll a segment that holds nothing live (no record). */
  type?: RecordType;
  buffers: Buffer[];
  length: number;
  /** Called once the record is in the file (readable, maybe not durable yet); `resolve` still waits for durability. */
  written?: () => void;
  resolve: (pos: Position) => void;
  reject: (err: Error) => void;
}

const SEGMENT_RE = /^(\d{12})\.seg$/;
const segmentName = (n: number): string => `${String(n).padStart(12, '0')}.seg`;

/**
 * One spool partition: an append-only log split into numbered segment files,
 * plus the in-memory index of the messages still queued in it. Appends are
 * group-committed: every append that arrives while a durable write is in
 * flight joins the next one, so concurrent injections share an fsync.
 *
 * Its records form an ordered stream (segment, offset) that the HA mirror
 * replicates and the drain reads; `commit` is emitted with the new end after
 * every durable write.
 */
export class SpoolPartition extends EventEmitter {
  readonly dir: string;
  private readonly segmentSize: number;
  private readonly fsync: boolean;
  /** O_DSYNC on the segment files: each write returns durable (fsync without syncAfterWrite). */
  private readonly dsync: boolean;
  private readonly syncAfterWrite: boolean;
  private readonly syncFile: (fh: FileHandle) => Promise<void>;
  private readonly log?: Logger;
  private readonly index = new Map<string, SpoolEntry>();
  /**
   * Messages written but not confirmed yet (a sync HA mirror's barrier still
   * pending): indexed, so their segment stays live and a withdrawal finds
   * them, but not in `entries()`, so no scan (due, retry-now, drain) delivers
   * a message that may still be withdrawn and resent by its client.
   */
  private readonly unconfirmed = new Set<string>();
  private readonly liveBySegment = new Map<number, number>();
  private segments: number[] = [];
  private fh?: FileHandle;
  private active = 0;
  private end = 0; // committed end of the active segment
  private readonly commit = new GroupCommit<Pending>((batch) => this.writeBatch(batch));
  private closed = false;
  private bytesTotal = 0;
  private commits = 0;
  private records = 0;
  /**
   * Bodies of recently accepted messages, most are delivered within a second
   * of acceptance: read back from memory they cost no open/read/close. Bounded
   * by bytes, oldest out first; everything is on disk regardless.
   */
  private readonly recent = new Map<string, { envelope: Envelope; body: Buffer }>();
  private recentBytes = 0;
  private readonly readers = new SegmentHandles((segment) => join(this.dir, segmentName(segment)));
  private readonly recentLimit: number;
  /** The last write error, cleared by the next successful write (disk full, read-only). */
  private writeError?: Error;
  private readonly reserve?: DiskReserve;
  /** A roll of the active segment was asked for because nothing in it is live. */
  private rollWanted = false;
  /** The reclamation a roll of a dead active segment started (close waits for it). */
  private reclaimRun?: Promise<void>;

  private constructor(options: PartitionOptions) {
    super();
    this.dir = options.dir;
    this.segmentSize = options.segmentSize ?? 64 * 1024 * 1024;
    this.fsync = options.fsync ?? true;
    this.syncAfterWrite = this.fsync && options.syncAfterWrite === true;
    this.dsync = this.fsync && !this.syncAfterWrite;
    this.syncFile = options.sync ?? ((fh) => fh.datasync());
    this.log = options.logger;
    this.recentLimit = options.recentBytes ?? 32 * 1024 * 1024;
    this.reserve = options.reserve;
  }

  /** Why intake is refused now: the last write error, or free space below `spool.min_free`. */
  get lastWriteError(): Error | undefined {
    if (this.writeError) return this.writeError;
    return this.reserve && !this.reserve.intakeOpen ? this.reserve.refusal() : undefined;
  }

  /** A delivery's outcome could be recorded now (the reserve or the disk has room); true with no reserve. */
  get recordable(): boolean {
    return this.reserve?.recordable ?? true;
  }

  /** Opens (creating if needed) a partition and rebuilds its index from the log. */
  static async open(options: PartitionOptions): Promise<SpoolPartition> {
    const p = new SpoolPartition(options);
    await p.recover();
    return p;
  }

  get size(): number {
    return this.index.size;
  }

  get head(): Position {
    return { segment: this.active, offset: this.end };
  }

  get(id: string): SpoolEntry | undefined {
    return this.index.get(id);
  }

  /** The queued messages delivery may take: every indexed one but those still awaiting `confirm`. */
  entries(): IterableIterator<SpoolEntry> {
    if (this.unconfirmed.size === 0) return this.index.values();
    return confirmedOnly(this.index.values(), this.unconfirmed);
  }

  /** Written but awaiting `confirm` (a sync mirror's barrier): indexed and counted in `size`, not deliverable (admin views say so). */
  awaitsConfirm(id: string): boolean {
    return this.unconfirmed.has(id);
  }

  /** How many of `size` await `confirm`: `size` minus what `entries()` yields. */
  get unconfirmedCount(): number {
    return this.unconfirmed.size;
  }

  /** An `unconfirmed` append may be delivered now (its sync mirror barrier answered). */
  confirm(id: string): void {
    this.unconfirmed.delete(id);
  }

  stats(): PartitionStats {
    return { entries: this.index.size, segments: this.segments.length, bytes: this.bytesTotal, commits: this.commits, records: this.records };
  }

  /**
   * Stores a message; resolves once it is durable, which is when it may be
   * acknowledged. `written` is called once its record is in the file, before
   * (with `syncAfterWrite`) or as (without) it becomes durable; not at all if
   * the write fails. `unconfirmed`: it stays out of `entries()` until
   * `confirm(id)` or its withdrawal (markDone), so nothing delivers it while
   * a sync mirror's barrier may still refuse it.
   */
  async appendMessage(envelope: Envelope, body: Buffer, written?: () => void, opts: { unconfirmed?: boolean } = {}): Promise<SpoolEntry> {
    if (this.index.has(envelope.id)) throw new VolleyError('EDUPLICATE', `message ${envelope.id} is already queued`);
    // Below min_free the space left is for the records that finish queued mail.
    if (this.reserve && !this.reserve.intakeOpen) throw this.reserve.refusal();
    const buffers = messagePayload(JSON.stringify(envelope), body);
    const pos = await this.enqueue(RecordType.Message, buffers, written);
    const entry = toEntry(envelope, pos, this.recordLength(buffers), this);
    if (opts.unconfirmed) this.unconfirmed.add(entry.id);
    this.addEntry(entry);
    this.remember(entry.id, envelope, body);
    return entry;
  }

  /** Records a change of delivery state (next attempt, attempts, finished recipients). */
  async updateState(change: StateChange): Promise<void> {
    const entry = this.index.get(change.id);
    if (!entry) throw new VolleyError('ENOTQUEUED', `message ${change.id} is not queued here`);
    await this.enqueue(RecordType.State, [Buffer.from(JSON.stringify(change))]);
    applyState(entry, change);
  }

  /** Removes a message from the queue. The index forgets it at once; the record makes it last. */
  async markDone(done: DoneRecord): Promise<void> {
    const entry = this.index.get(done.id);
    if (!entry) throw new VolleyError('ENOTQUEUED', `message ${done.id} is not queued here`);
    const hidden = this.unconfirmed.has(entry.id);
    this.removeEntry(entry);
    try {
      await this.enqueue(RecordType.Done, [Buffer.from(JSON.stringify(done))]);
    } catch (err) {
      this.addEntry(entry); // not durable: it is still queued
      // A withdrawal (its client was refused) that failed: delivering it now would duplicate the client's retry.
      if (hidden) this.unconfirmed.add(entry.id);
      throw err;
    }
    await this.reclaim().catch((err) => this.log?.error({ err }, 'spool: reclaiming segments failed'));
  }

  /** Reads a queued message's envelope and body back from its record, verifying the checksum. */
  async read(entry: SpoolEntry): Promise<{ envelope: Envelope; body: Buffer }> {
    const cached = this.recent.get(entry.id);
    // The stored envelope never changes; the index carries the delivery state.
    if (cached) return { envelope: withState({ ...cached.envelope }, entry), body: cached.body };
    return this.readers.use(entry.segment, async (fh) => {
      const buf = Buffer.allocUnsafe(entry.length);
      const { bytesRead } = await fh.read(buf, 0, entry.length, entry.offset);
      const header = bytesRead >= HEADER_SIZE ? parseHeader(buf, 0) : undefined;
      if (!header || bytesRead < entry.length || !checksumOk(buf, 0, header)) {
        throw new VolleyError('ECORRUPT', `record of ${entry.id} at ${entry.segment}:${entry.offset} is corrupt`);
      }
      const { envelope, body } = splitMessagePayload(buf.subarray(HEADER_SIZE));
      return { envelope: withState(JSON.parse(envelope) as Envelope, entry), body };
    });
  }

  /**
   * The ordered change stream from `from` up to the committed head. With
   * `follow`, waits for new commits instead of ending.
   */
  async *stream(from: Position = { segment: 0, offset: 0 }, follow = false): AsyncGenerator<{ position: Position; record: RawRecord }> {
    let at = from;
    for (;;) {
      for (const seg of this.segments.filter((s) => s >= at.segment)) {
        const to = seg === this.active ? this.end : undefined;
        const start = seg === at.segment ? at.offset : 0;
        const reader = readSegment(join(this.dir, segmentName(seg)), { from: start, to });
        for await (const record of reader) {
          yield { position: { segment: seg, offset: record.offset }, record };
          at = { segment: seg, offset: record.offset + record.length };
        }
        if (seg !== this.active) at = { segment: seg + 1, offset: 0 };
      }
      if (!follow || this.closed) return;
      if (comparePositions(at, this.head) >= 0) await new Promise((resolve) => this.once('commit', resolve));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.commit.idle();
    await this.reclaimRun;
    await this.fh?.close();
    this.fh = undefined;
    this.readers.closeAll();
    this.emit('commit', this.head);
  }

  // --- writing -------------------------------------------------------------

  private recordLength(payload: Buffer[]): number {
    let n = HEADER_SIZE;
    for (const b of payload) n += b.length;
    return n;
  }

  private enqueue(type: RecordType, payload: Buffer[], written?: () => void): Promise<Position> {
    if (this.closed) return Promise.reject(new VolleyError('ECLOSED', 'spool partition is closed'));
    const buffers = frame(type, payload);
    return new Promise((resolve, reject) => {
      this.commit.add({ type, buffers, length: this.recordLength(payload), written, resolve, reject });
    });
  }

  private async writeBatch(batch: Pending[]): Promise<void> {
    let items = batch;
    let err = await this.tryWrite(items);
    if (err?.code === 'ENOSPC' && this.reserve) {
      // The disk is full: messages are refused (and intake stops trying once
      // the free space is read again, now rather than at the next tick), and
      // the records that finish or reschedule queued mail take their room from the reserve.
      void this.reserve.check().catch(() => undefined);
      const records = items.filter((p) => p.type !== RecordType.Message);
      for (const p of items) if (p.type === RecordType.Message) p.reject(err);
      items = records;
      while (err?.code === 'ENOSPC' && items.length > 0 && (await this.reserve.release(items.reduce((n, p) => n + p.length, 0)))) {
        err = await this.tryWrite(items);
      }
    }
    if (!err) return;
    if (!this.writeError) this.log?.error({ err }, 'spool: write failed; intake refused until it succeeds');
    this.writeError = err;
    for (const p of items) p.reject(err);
  }

  /** One durable write of `batch`: resolves its items and returns undefined, or returns the error and settles none. */
  private async tryWrite(batch: Pending[]): Promise<VolleyError | undefined> {
    try {
      let total = 0;
      for (const p of batch) total += p.length;
      const rolled = this.rollWanted && (this.liveBySegment.get(this.active) ?? 0) === 0 && this.end > 0;
      this.rollWanted = false;
      if (rolled || (this.end > 0 && this.end + total > this.segmentSize)) await this.roll();
      const fh = this.fh!;
      const buffers: Buffer[] = [];
      const positions: Position[] = [];
      let offset = this.end;
      for (const p of batch) {
        positions.push({ segment: this.active, offset });
        offset += p.length;
        for (const b of p.buffers) buffers.push(b);
      }
      if (total > 0) {
        // The segment is open with O_DSYNC (fsync on, no syncAfterWrite): the write returns durable.
        const t0 = process.hrtime.bigint();
        await writeFully(fh, buffers, this.end);
        // In the file now: a sync mirror may start on it while the local sync runs.
        for (const p of batch) callWritten(p, this.log);
        if (this.syncAfterWrite) await this.syncFile(fh);
        if (this.fsync) this.emit('fsync', Number(process.hrtime.bigint() - t0) / 1e9);
        this.reserve?.noteWritten(total);
      }
      this.end = offset;
      this.bytesTotal += total;
      this.commits += 1;
      this.records += batch.length;
      if (this.writeError) this.log?.info('spool: writes succeed again');
      this.writeError = undefined;
      batch.forEach((p, i) => p.resolve(positions[i]));
      this.emit('commit', this.head);
      if (rolled) this.reclaimRun = this.reclaim().catch((e) => this.log?.error({ err: e }, 'spool: reclaiming segments failed'));
      return undefined;
    } catch (err) {
      // Nothing in the batch is durable. Cut off whatever part reached the file so
      // the next write starts on a record boundary; a torn tail left by a crash is
      // found by the start-up scan instead.
      await this.fh?.truncate(this.end).catch(() => undefined);
      return wrapWriteError(err);
    }
  }

  private async roll(): Promise<void> {
    const next = this.active + 1;
    const fh = await open(join(this.dir, segmentName(next)), durableFlags('create', this.dsync));
    await this.syncDir();
    await this.fh?.close();
    this.fh = fh;
    this.active = next;
    this.end = 0;
    this.segments.push(next);
  }

  private async syncDir(): Promise<void> {
    if (!this.fsync) return;
    const dh = await open(this.dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }

  /** Deletes the oldest segments once nothing queued lives in them. */
  private reclaiming = false;
  private async reclaim(): Promise<void> {
    if (this.reclaiming) return;
    this.reclaiming = true;
    try {
      // Only oldest-first: a Done record in a later segment may be what keeps an
      // earlier message from coming back, so a segment goes only with all before it.
      while (this.segments.length > 1 && (this.liveBySegment.get(this.segments[0]) ?? 0) === 0) {
        const seg = this.segments.shift()!;
        this.liveBySegment.delete(seg);
        await rm(join(this.dir, segmentName(seg)), { force: true });
        this.readers.retire(seg);
      }
      // The active segment too, once nothing in it is live: the next write
      // starts a new one and this one goes. Without it a queue that empties
      // keeps up to a whole segment on disk for good, which a full disk cannot
      // spare. Not after every message of a quiet queue (a roll is a file and
      // a directory sync): once it holds a sixteenth of a segment, or at once
      // while free space is short.
      if (
        this.segments.length === 1 &&
        !this.closed &&
        !this.rollWanted &&
        this.end > 0 &&
        (this.liveBySegment.get(this.active) ?? 0) === 0 &&
        (this.end >= this.segmentSize / 16 || (this.reserve !== undefined && !this.reserve.intakeOpen))
      ) {
        this.rollWanted = true;
        this.commit.add({ buffers: [], length: 0, resolve: () => undefined, reject: () => undefined });
      }
    } finally {
      this.reclaiming = false;
    }
  }

  // --- index ---------------------------------------------------------------

  private addEntry(entry: SpoolEntry): void {
    this.index.set(entry.id, entry);
    this.liveBySegment.set(entry.segment, (this.liveBySegment.get(entry.segment) ?? 0) + 1);
  }

  private remember(id: string, envelope: Envelope, body: Buffer): void {
    if (this.recentLimit <= 0 || body.length > this.recentLimit / 16) return;
    this.recent.set(id, { envelope, body });
    this.recentBytes += body.length;
    for (const [oldId, old] of this.recent) {
      if (this.recentBytes <= this.recentLimit) break;
      this.recent.delete(oldId);
      this.recentBytes -= old.body.length;
    }
  }

  private removeEntry(entry: SpoolEntry): void {
    const cached = this.recent.get(entry.id);
    if (cached) {
      this.recent.delete(entry.id);
      this.recentBytes -= cached.body.length;
    }
    this.index.delete(entry.id);
    // Withdrawn before it was confirmed (markDone puts it back hidden if the withdrawal fails).
    this.unconfirmed.delete(entry.id);
    this.liveBySegment.set(entry.segment, (this.liveBySegment.get(entry.segment) ?? 1) - 1);
  }

  // --- recovery ------------------------------------------------------------

  private async recover(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const names = (await readdir(this.dir)).filter((n) => SEGMENT_RE.test(n)).sort();
    this.segments = names.map((n) => Number(SEGMENT_RE.exec(n)![1]));
    for (const seg of this.segments) {
      const path = join(this.dir, segmentName(seg));
      const isLast = seg === this.segments[this.segments.length - 1];
      const reader = readSegmentBatches(path, {
        sealed: !isLast,
        onCorrupt: ({ offset, length }) =>
          this.log?.warn({ segment: seg, offset, length, partition: this.dir }, isLast ? 'spool: torn or corrupt tail skipped' : 'spool: corrupt bytes skipped'),
      });
      let r = await reader.next();
      while (!r.done) {
        for (const record of r.value) {
          this.replay(seg, record);
          this.bytesTotal += record.length;
        }
        r = await reader.next();
      }
      if (isLast) this.end = r.value;
    }
    if (this.segments.length === 0) {
      this.segments = [1];
      this.end = 0;
      this.fh = await open(join(this.dir, segmentName(1)), durableFlags('create', this.dsync));
      await this.syncDir();
    } else {
      this.fh = await open(join(this.dir, segmentName(this.segments[this.segments.length - 1])), durableFlags('existing', this.dsync));
      // Appends continue at the last valid record; a torn tail is cut off so the
      // stream never carries it.
      const { size } = await this.fh.stat();
      if (size > this.end) await this.fh.truncate(this.end);
    }
    this.active = this.segments[this.segments.length - 1];
    await this.reclaim();
  }

  private replay(segment: number, record: RawRecord): void {
    try {
      if (record.type === RecordType.Message) {
        const { buffer, start } = record;
        const envLen = buffer.readUInt32LE(start + HEADER_SIZE);
        const envelope = buffer.toString('utf8', start + HEADER_SIZE + 4, start + HEADER_SIZE + 4 + envLen);
        const env = JSON.parse(envelope) as Envelope;
        const prev = this.index.get(env.id);
        if (prev) this.removeEntry(prev); // a relocated copy supersedes the original
        this.addEntry(toEntry(env, { segment, offset: record.offset }, record.length, this));
      } else if (record.type === RecordType.State) {
        const change = JSON.parse(record.buffer.toString('utf8', record.start + HEADER_SIZE, record.start + record.length)) as StateChange;
        const entry = this.index.get(change.id);
        if (entry) applyState(entry, change);
      } else if (record.type === RecordType.Done) {
        const done = JSON.parse(record.buffer.toString('utf8', record.start + HEADER_SIZE, record.start + record.length)) as DoneRecord;
        const entry = this.index.get(done.id);
        if (entry) this.removeEntry(entry);
      }
    } catch (err) {
      // The CRC matched, so this is a record we wrote but cannot read: say so, keep going.
      this.log?.error({ err, segment, offset: record.offset }, 'spool: unreadable record skipped');
    }
  }
}

// Bulk senders use a handful of return paths for millions of messages: one
// string each instead of one per queued message (bounded, so a sender per
// message cannot grow it without limit).
const senders = new Map<string, string>();
function intern(s: string): string {
  const known = senders.get(s);
  if (known !== undefined) return known;
  if (senders.size >= 50_000) senders.clear();
  senders.set(s, s);
  return s;
}

function toEntry(env: Envelope, pos: Position, length: number, owner: SpoolPartition): SpoolEntry {
  return {
    id: env.id,
    owner,
    segment: pos.segment,
    offset: pos.offset,
    length,
    from: intern(env.from),
    to: env.to,
    received: env.received,
    ...(env.expires !== undefined && { expires: env.expires }),
    next: env.next ?? env.received,
    attempts: env.attempts ?? 0,
    size: env.size,
    pool: env.pool,
    vmta: env.vmta,
  };
}

/** The envelope as stored, with the delivery state the index holds now. */
function withState(env: Envelope, entry: SpoolEntry): Envelope {
  env.to = entry.to;
  env.next = entry.next;
  env.attempts = entry.attempts;
  return env;
}

function applyState(entry: SpoolEntry, change: StateChange): void {
  if (change.next !== undefined) entry.next = change.next;
  if (change.attempts !== undefined) entry.attempts = change.attempts;
  if (change.finished?.length) {
    const finished = new Set(change.finished);
    entry.to = entry.to.filter((r) => !finished.has(r));
  }
}

function* confirmedOnly(all: IterableIterator<SpoolEntry>, unconfirmed: ReadonlySet<string>): IterableIterator<SpoolEntry> {
  for (const e of all) if (!unconfirmed.has(e.id)) yield e;
}

/** A `written` callback must not break the write it reports on: its error is logged, the batch goes on. */
function callWritten(p: Pending, log?: Logger): void {
  try {
    p.written?.();
  } catch (err) {
    log?.error({ err }, 'spool: a written callback threw');
  }
}

function wrapWriteError(err: unknown): VolleyError {
  const code = errorCode(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') return new VolleyError('ENOSPC', 'spool disk is full', { cause: err });
  if (code === 'EROFS') return new VolleyError('EROFS', 'spool disk is read-only', { cause: err });
  if (err instanceof VolleyError) return err;
  return new VolleyError('EIO', `spool write failed: ${(err as Error).message}`, { cause: err });
}
