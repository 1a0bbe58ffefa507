// Reads the node's event log from a position, for one sink (or one replay):
// complete lines only, across every producer's files, moving from a file to
// the producer's next one once that exists (a closed file is never written
// again). A partial last line is being written, or was torn by a crash and is
// cut at the producer's restart: it is never returned.
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { errorCode } from '../../shared/errors';
import { listEventFiles, parseEventFile, type EventFile } from './event-log';

/** Where a reader stands in one producer's files: the next byte to read. */
export interface FilePosition {
  file: string;
  offset: number;
}

/** Producer -> position. A producer missing from it is read from its first file. */
export type Cursor = Record<string, FilePosition>;

/** Unread bytes of one file, from `from` to `to`. */
export interface UnreadSpan {
  producer: string;
  file: string;
  from: number;
  to: number;
  /** Not the producer's newest file: never written again. */
  closed: boolean;
}

interface ProducerState {
  pos: FilePosition;
  fh?: FileHandle;
  fhFile?: string;
  /** Bytes read past pos.offset, not yet returned (a partial line, or lines past the last call's limit). */
  buf: Buffer;
}

const CHUNK = 1 << 20;

export function copyCursor(c: Cursor): Cursor {
  const out: Cursor = {};
  for (const [p, v] of Object.entries(c)) out[p] = { file: v.file, offset: v.offset };
  return out;
}

/** Order of two files of one producer (by their sequence number). */
export function compareFiles(a: string, b: string): number {
  return (parseEventFile(a)?.seq ?? 0) - (parseEventFile(b)?.seq ?? 0);
}

/** The end of the log as it is now: where a new sink starts (it takes events from now on). */
export function endCursor(dir: string): Cursor {
  const out: Cursor = {};
  for (const [producer, files] of listEventFiles(dir)) {
    const last = files.at(-1)!;
    out[producer] = { file: last.name, offset: completeLinesEnd(join(dir, last.name)) };
  }
  return out;
}

/**
 * Where a file's last complete line ends. The newest file of a producer
 * that crashed mid-write ends in part of a line, which its restart cuts off
 * and writes over: a cursor past the last newline would land inside the
 * producer's next line, and that event would be read as a broken line and
 * passed over.
 */
function completeLinesEnd(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return 0;
    throw err;
  }
  try {
    const chunk = Buffer.allocUnsafe(64 * 1024);
    for (let end = fstatSync(fd).size; end > 0; ) {
      const start = Math.max(0, end - chunk.length);
      const got = readSync(fd, chunk, 0, end - start, start);
      const nl = chunk.subarray(0, got).lastIndexOf(0x0a);
      if (nl >= 0) return start + nl + 1;
      end = start;
    }
    return 0;
  } finally {
    closeSync(fd);
  }
}

/** The start of every file still present: where a replay begins. */
export function startCursor(dir: string): Cursor {
  const out: Cursor = {};
  for (const [producer, files] of listEventFiles(dir)) out[producer] = { file: files[0].name, offset: 0 };
  return out;
}

/** A file's size; a producer's newest file may end in a partial line, which readers do not return (see read). */
function completeSize(path: string): number {
  try {
    return statSync(path).size;
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return 0;
    throw err;
  }
}

export class LogReader {
  private readonly producers = new Map<string, ProducerState>();
  /** Rotates which producer is read first, so a busy one does not starve the others. */
  private turn = 0;

  /**
   * @param until read no further than this (a replay's end); producers it
   * does not name are not read.
   */
  constructor(
    private readonly dir: string,
    position: Cursor,
    private readonly until?: Cursor,
  ) {
    for (const [producer, pos] of Object.entries(position)) this.producers.set(producer, { pos: { ...pos }, buf: Buffer.alloc(0) });
  }

  /** Where the next read starts, per producer. */
  position(): Cursor {
    const out: Cursor = {};
    for (const [p, s] of this.producers) out[p] = { file: s.pos.file, offset: s.pos.offset };
    return out;
  }

  /**
   * Up to `maxLines` complete lines (without their newline). `more` says the
   * log held more than that: call again at once rather than wait.
   */
  async read(maxLines: number): Promise<{ lines: string[]; more: boolean }> {
    const files = listEventFiles(this.dir);
    for (const [producer, list] of files) {
      if (!this.producers.has(producer) && (!this.until || this.until[producer])) this.producers.set(producer, { pos: { file: list[0].name, offset: 0 }, buf: Buffer.alloc(0) });
    }
    const names = [...this.producers.keys()].sort();
    const lines: string[] = [];
    let more = false;
    for (let i = 0; i < names.length; i++) {
      const producer = names[(this.turn + i) % names.length];
      if (lines.length >= maxLines) {
        more = true;
        break;
      }
      try {
        if (await this.readProducer(producer, files.get(producer) ?? [], maxLines - lines.length, lines)) more = true;
      } catch (err) {
        // Lines already taken have moved their producers' positions: thrown
        // away with the error, they would never be read again. They are
        // returned; the failing file is tried again at the next call.
        if (lines.length === 0) throw err;
        more = true;
        break;
      }
    }
    this.turn++;
    return { lines, more };
  }

  /** Every byte not yet read, per file, oldest file of each producer first. */
  unread(): UnreadSpan[] {
    const files = listEventFiles(this.dir);
    const out: UnreadSpan[] = [];
    for (const [producer, list] of files) {
      const s = this.producers.get(producer);
      const newest = list.at(-1)!.name;
      for (const f of list) {
        if (s && compareFiles(f.name, s.pos.file) < 0) continue;
        const from = s && f.name === s.pos.file ? s.pos.offset : 0;
        const to = completeSize(join(this.dir, f.name));
        if (to > from) out.push({ producer, file: f.name, from, to, closed: f.name !== newest });
      }
    }
    return out;
  }

  /** Moves a producer's position to the start of the file after `file` (the bound skipping what a sink could not take). */
  async skipPast(producer: string, file: string): Promise<void> {
    const list = listEventFiles(this.dir).get(producer) ?? [];
    const next = list.find((f) => compareFiles(f.name, file) > 0);
    if (!next) return;
    const s = this.producers.get(producer) ?? { pos: { file: next.name, offset: 0 }, buf: Buffer.alloc(0) };
    s.pos = { file: next.name, offset: 0 };
    s.buf = Buffer.alloc(0);
    this.producers.set(producer, s);
    await this.closeHandle(s);
  }

  async close(): Promise<void> {
    for (const s of this.producers.values()) await this.closeHandle(s);
  }

  /** Appends lines of one producer; true when it has more than `max` ready. */
  private async readProducer(producer: string, list: EventFile[], max: number, out: string[]): Promise<boolean> {
    const s = this.producers.get(producer)!;
    const stop = this.until?.[producer];
    for (;;) {
      if (stop && compareFiles(s.pos.file, stop.file) > 0) return false;
      const limit = stop && stop.file === s.pos.file ? stop.offset : Infinity;
      // Lines already buffered first.
      let start = 0;
      while (out.length < max) {
        const nl = s.buf.indexOf(0x0a, start);
        if (nl < 0 || s.pos.offset + nl + 1 - start > limit) break;
        out.push(s.buf.toString('utf8', start, nl));
        s.pos.offset += nl + 1 - start;
        start = nl + 1;
      }
      s.buf = s.buf.subarray(start);
      if (out.length >= max) return true; // perhaps more: the caller reads again at once, at worst finding nothing
      if (s.pos.offset + s.buf.length >= limit) {
        s.buf = Buffer.alloc(0);
        return false;
      }
      const got = await this.fill(s, list);
      if (got === 'data' || got === 'moved') continue;
      // Nothing more in this file: move on once the producer has a newer one.
      const next = list.find((f) => compareFiles(f.name, s.pos.file) > 0);
      if (!next) {
        // A partial last line is not kept: a producer restarting after a
        // crash cuts it and writes other bytes in its place.
        s.buf = Buffer.alloc(0);
        return false;
      }
      // A closed file cannot grow: what it still holds past the last newline
      // is a line torn by a crash that the producer's restart did not cut
      // (it had moved on): there is no event in it to read.
      s.pos = { file: next.name, offset: 0 };
      s.buf = Buffer.alloc(0);
      await this.closeHandle(s);
    }
  }

  /** Reads the next chunk of the producer's file into its buffer: data, its end, or moved on (the file is gone). */
  private async fill(s: ProducerState, list: EventFile[]): Promise<'data' | 'eof' | 'moved'> {
    if (s.fhFile !== s.pos.file) {
      await this.closeHandle(s);
      try {
        s.fh = await open(join(this.dir, s.pos.file), 'r');
        s.fhFile = s.pos.file;
      } catch (err) {
        if (errorCode(err) !== 'ENOENT') throw err;
        // Removed under us (an operator, or a cursor older than retention):
        // go on from the producer's next file that exists.
        const next = list.find((f) => compareFiles(f.name, s.pos.file) > 0);
        if (!next) return 'eof';
        s.pos = { file: next.name, offset: 0 };
        s.buf = Buffer.alloc(0);
        return 'moved';
      }
    }
    // Sized by what is there: an idle poll allocates nothing.
    const at = s.pos.offset + s.buf.length;
    const want = Math.min(CHUNK, (await s.fh!.stat()).size - at);
    if (want <= 0) return 'eof';
    const chunk = Buffer.allocUnsafe(want);
    const { bytesRead } = await s.fh!.read(chunk, 0, want, at);
    if (bytesRead === 0) return 'eof';
    s.buf = s.buf.length ? Buffer.concat([s.buf, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
    return 'data';
  }

  private async closeHandle(s: ProducerState): Promise<void> {
    const fh = s.fh;
    s.fh = undefined;
    s.fhFile = undefined;
    await fh?.close();
  }
}
