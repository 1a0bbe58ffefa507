// The node's event log: every event (delivery attempts, bounces, complaints,
// purges) as one JSON line under `<persistent>/log/events/`, one series of
// files per producer (`w0`, `w1`, ... a worker each; `primary`), written with
// group commit so an event is durable before anything that depends on it.
// Sinks read it from cursors (log-reader.ts), so a file has its final name
// from its creation and is never renamed: a (file, offset) stays valid.
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { durableFlags, writeFully } from '../../shared/durable-file';
import { GroupCommit } from '../../shared/group-commit';
import { systemClock, type Clock, type TimerHandle } from '../../shared/clock';
import { errorCode } from '../../shared/errors';
import type { SpaceAccount } from '../spool/disk-reserve';
import type { EventWriter, NewEvent } from './types';

/** The event-log directory of a node. */
export function eventsDir(persistentPath: string): string {
  return join(persistentPath, 'log', 'events');
}

/** One event-log file, as its name says. */
export interface EventFile {
  producer: string;
  /** Increases by one per file of a producer, across restarts: the order of its files. */
  seq: number;
  name: string;
}

// `<producer>.<UTC stamp>-<seq>.jsonl`: the stamp for people and the S3 date
// path, the sequence for order (a clock stepping back must not reorder files).
const FILE_RE = /^([A-Za-z0-9_-]+)\.(\d{8}T\d{9}Z)-(\d{6,})\.jsonl$/;

export function parseEventFile(name: string): EventFile | undefined {
  const m = FILE_RE.exec(name);
  return m ? { producer: m[1], seq: Number(m[3]), name } : undefined;
}

export function eventFileName(producer: string, at: number, seq: number): string {
  const stamp = new Date(at).toISOString().replace(/[-:.]/g, '');
  return `${producer}.${stamp}-${String(seq).padStart(6, '0')}.jsonl`;
}

/** Every event-log file in `dir`, per producer, oldest first (the last of each producer is its open one). */
export function listEventFiles(dir: string): Map<string, EventFile[]> {
  const out = new Map<string, EventFile[]>();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return out;
    throw err;
  }
  for (const n of names) {
    const f = parseEventFile(n);
    if (!f) continue;
    const list = out.get(f.producer) ?? [];
    list.push(f);
    out.set(f.producer, list);
  }
  for (const list of out.values()) list.sort((a, b) => a.seq - b.seq);
  return out;
}

export interface EventLogOptions {
  dir: string;
  /** The producer: distinguishes the files of the processes of one node (`w0`, `primary`). */
  name: string;
  /** Stamped on events that carry no `node`. */
  node?: string;
  maxSize: number;
  maxAgeMs: number;
  fsync?: boolean;
  /**
   * How long events collect before one synced write (default 0: the next
   * turn of the event loop). Nobody's reply waits on this log, and each
   * synced write costs a thread-pool trip and a journal commit: at 2,000
   * deliveries a second, 10 ms makes one write of 20 events out of ten of
   * two. The price is that much more delay before an attempt's result is
   * recorded, and so that much more mail a crash would send again.
   */
  commitIntervalMs?: number;
  /** File ages and the commit interval are counted on it (the system's when absent). */
  clock?: Clock;
  /**
   * The worker's spool reserve: a write that meets a full disk takes its room
   * from it (an attempt's events are written before its spool record, so a
   * finished delivery needs both).
   */
  reserve?: SpaceAccount;
}

/** One write() call's lines, waiting for the next group commit. */
interface PendingLines {
  line: string;
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * One producer's event log, written with group commit so an event is durable
 * before the spool records what depends on it (at least once: a crash in
 * between repeats the event, never loses it). A full or old file is closed
 * and the next one created; a closed file is never written again.
 */
export class EventLog implements EventWriter {
  private fh?: FileHandle;
  private path?: string;
  private seq = 0;
  private size = 0;
  private openedAt = 0;
  /** closeCurrent asked: the next commit closes the file whatever its age. */
  private closeNow = false;
  private readonly commit: GroupCommit<PendingLines>;
  private readonly ageTimer: TimerHandle;
  private readonly clock: Clock;

  constructor(private readonly options: EventLogOptions) {
    mkdirSync(options.dir, { recursive: true });
    this.clock = options.clock ?? systemClock;
    this.commit = new GroupCommit((batch) => this.writeBatch(batch), { intervalMs: options.commitIntervalMs, clock: this.clock });
    // A file is closed by age even when no event comes after it: a node gone
    // quiet after a burst would otherwise keep its last events in an open
    // file, which no file sink (S3) ever takes, until the next event.
    this.ageTimer = this.clock.setInterval(() => this.closeIfOld(), Math.min(Math.max(options.maxAgeMs, 100), 1000));
    this.ageTimer.unref();
  }

  /** Closes the current file if max_age has passed, through the commit queue so no write races it. */
  private closeIfOld(): void {
    if (!this.fh || this.size === 0 || this.clock.now() - this.openedAt < this.options.maxAgeMs) return;
    this.commit.add({ line: '', resolve: () => undefined, reject: () => undefined });
  }

  /**
   * Closes the current file now (when it holds anything), through the commit
   * queue like the age check: `volley drain` asks for it once no attempt is in
   * flight, so the last events reach the s3 sink (which takes closed files
   * only) before the node is stopped and retired. Resolves once closed.
   */
  closeCurrent(): Promise<void> {
    this.closeNow = true;
    return new Promise((resolve, reject) => this.commit.add({ line: '', resolve, reject }));
  }

  /**
   * closeCurrent's part when this process has written nothing yet: the
   * producer's newest file is a previous run's, still "open" (the newest), so
   * a next, empty file is created to close it. Nothing to close: nothing done.
   */
  private async closeLeftOpen(): Promise<void> {
    const newest = listEventFiles(this.options.dir).get(this.options.name)?.at(-1);
    if (!newest) return;
    const { size } = await stat(join(this.options.dir, newest.name));
    if (size > 0) await this.create(this.clock.now(), newest.seq + 1);
  }

  /** The file being written, once the first write opened it. */
  get currentPath(): string | undefined {
    return this.path;
  }

  /** This producer's closed files, oldest first. */
  closedFiles(): string[] {
    const files = listEventFiles(this.options.dir).get(this.options.name) ?? [];
    return files.filter((f) => join(this.options.dir, f.name) !== this.path && f !== files.at(-1)).map((f) => join(this.options.dir, f.name));
  }

  /**
   * Appends `events`, resolved once durable. An event without an id gets one
   * here, set on the object itself: a write the caller repeats (a full disk)
   * repeats the same id, and the id is in the line, so every sink and every
   * retry to it sees the same one.
   */
  write(events: readonly NewEvent[]): Promise<void> {
    if (events.length === 0) return Promise.resolve();
    let line = '';
    for (const e of events) {
      e.event_id ??= randomUUID();
      if (this.options.node !== undefined) e.node ??= this.options.node;
      line += JSON.stringify(e) + '\n';
    }
    return new Promise((resolve, reject) => {
      this.commit.add({ line, resolve, reject });
    });
  }

  async close(): Promise<void> {
    this.clock.clearInterval(this.ageTimer);
    await this.commit.idle();
    await this.fh?.close();
    this.fh = undefined;
  }

  private async writeBatch(batch: PendingLines[]): Promise<void> {
    const data = Buffer.from(batch.map((p) => p.line).join(''));
    for (;;) {
      try {
        if (data.length === 0 && !this.fh) {
          // The age check's empty batch (closeIfOld) must not open a file; closeCurrent's closes a previous run's.
          if (this.closeNow) await this.closeLeftOpen();
          this.closeNow = false;
          return batch.forEach((p) => p.resolve());
        }
        await this.ensureOpen();
        if (data.length === 0) {
          this.closeNow = false; // an empty file: nothing to close
          return batch.forEach((p) => p.resolve());
        }
        // Opened with O_DSYNC (unless fsync is off): the write returns durable.
        await writeFully(this.fh!, [data], this.size);
        this.size += data.length;
        this.options.reserve?.noteWritten(data.length);
        batch.forEach((p) => p.resolve());
        return;
      } catch (err) {
        // A write that failed part-way (a full disk) leaves part of a line: cut
        // it off, so the next batch starts a line and every line stays JSON.
        await this.fh?.truncate(this.size).catch(() => undefined);
        const full = errorCode(err) === 'ENOSPC' || errorCode(err) === 'EDQUOT';
        if (full && this.options.reserve && (await this.options.reserve.release(data.length).catch(() => false))) continue;
        // Its events are not lost: the attempt is not recorded, and the recorder holds it and tries again.
        batch.forEach((p) => p.reject(err as Error));
        return;
      }
    }
  }

  private async ensureOpen(): Promise<void> {
    const now = this.clock.now();
    if (this.fh && (this.size >= this.options.maxSize || (this.size > 0 && (this.closeNow || now - this.openedAt >= this.options.maxAgeMs)))) {
      this.closeNow = false;
      // Closed for good: the next file's existence is what tells readers so.
      await this.fh.close();
      this.fh = undefined;
      await this.create(now, this.seq + 1);
      return;
    }
    if (this.fh) return;
    // The first write of this process goes on in the producer's newest file.
    const newest = listEventFiles(this.options.dir).get(this.options.name)?.at(-1);
    if (!newest) return this.create(now, 1);
    const path = join(this.options.dir, newest.name);
    const fh = await open(path, durableFlags('append', this.options.fsync !== false));
    try {
      const { size } = await fh.stat();
      this.size = await completeLinesEnd(fh, size);
      if (this.size < size) await fh.truncate(this.size);
    } catch (err) {
      await fh.close();
      throw err;
    }
    this.fh = fh;
    this.path = path;
    this.seq = newest.seq;
    this.openedAt = now;
  }

  private async create(now: number, seq: number): Promise<void> {
    const path = join(this.options.dir, eventFileName(this.options.name, now, seq));
    this.fh = await open(path, durableFlags('append', this.options.fsync !== false));
    this.path = path;
    this.seq = seq;
    this.size = 0;
    this.openedAt = now;
  }
}

/**
 * Where the file's last complete line ends. A crash in the middle of a write
 * leaves part of a line at the end; appending after it would put a broken
 * line in the middle of the file, which a reader of JSON lines would stop
 * at. That tail was never acknowledged (the attempt was not recorded, so it
 * is tried and logged again), and is cut off.
 */
async function completeLinesEnd(fh: FileHandle, size: number): Promise<number> {
  const chunk = Buffer.allocUnsafe(64 * 1024);
  for (let end = size; end > 0; ) {
    const start = Math.max(0, end - chunk.length);
    const { bytesRead } = await fh.read(chunk, 0, end - start, start);
    const nl = chunk.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (nl >= 0) return start + nl + 1;
    end = start;
  }
  return 0;
}
