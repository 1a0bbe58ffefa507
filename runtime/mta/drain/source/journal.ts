// The drain's durable journal, <persistent>/drain/journal.jsonl: before a
// batch leaves, the line {dest, ids} is on disk; once the destination's
// answer is recorded in the spool, {removed: ids}. What the journal sends to
// a destination without a later `removed` is "maybe there": a rerun sends
// those ids to that same destination only (it deduplicates by id, so it
// answers `duplicate` or takes them), never to another, and an MTA that
// starts with such a journal holds them back from delivery. That is how a
// SIGKILL at any moment never leads to a message delivered twice.
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, readSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { VolleyError } from '../../../shared/errors';

export type JournalLine =
  /** These ids are about to be sent to `dest` (host:port as given to the drain). */
  | { dest: string; ids: string[]; at: number }
  /** These ids are settled: removed locally after an acknowledgement, or known not to be held by `dest` (released). */
  | { removed: string[]; at: number }
  | { released: string[]; dest: string; at: number };

export function journalPath(persistentPath: string): string {
  return join(persistentPath, 'drain', 'journal.jsonl');
}

/** Ids sent and not yet settled, by the destination they were sent to. */
export function unsettled(lines: readonly JournalLine[]): Map<string, string> {
  const open = new Map<string, string>();
  for (const l of lines) {
    if ('ids' in l) for (const id of l.ids) open.set(id, l.dest);
    else if ('removed' in l) for (const id of l.removed) open.delete(id);
    else for (const id of l.released) if (open.get(id) === l.dest) open.delete(id);
  }
  return open;
}

/** Reads a journal; a torn last line (the crash came mid-write) is ignored: its batch never left. */
export function readJournal(file: string): JournalLine[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const out: JournalLine[] = [];
  lines.forEach((line, i) => {
    if (line === '') return;
    try {
      out.push(JSON.parse(line) as JournalLine);
    } catch (err) {
      // Only the last line can be torn (we append and fsync one line at a time); anything else is damage.
      if (i === lines.length - 1) return;
      throw new VolleyError('EJOURNAL', `drain journal ${file}: line ${i + 1} is not JSON: ${(err as Error).message}`);
    }
  });
  return out;
}

/** Appends with an fsync per line: a line that returned is on disk before the batch it names is sent. */
export class Journal {
  private fd: number;

  constructor(readonly file: string) {
    mkdirSync(dirname(file), { recursive: true });
    // A torn last line (no newline: the crash came mid-append, so its batch never left)
    // would glue onto the next one: cut it off.
    if (existsSync(file)) cutTornTail(file);
    this.fd = openSync(file, 'a');
  }

  /**
   * Throws when the line is not all on disk, and then cuts off what part of it
   * was written (a full disk can take half a line): a torn line in the middle
   * would make the whole journal unreadable once the next line follows it.
   */
  append(line: JournalLine): void {
    const data = Buffer.from(`${JSON.stringify(line)}\n`);
    const before = fstatSync(this.fd).size;
    try {
      for (let at = 0; at < data.length; ) at += writeSync(this.fd, data, at);
      fsyncSync(this.fd);
    } catch (err) {
      try {
        ftruncateSync(this.fd, before);
      } catch {
        // The next open cuts a torn last line off too (constructor).
      }
      throw err;
    }
  }

  close(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
  }

  /** Nothing is unsettled: keep the journal as the last drain's record under another name (a new drain starts clean). */
  retire(): void {
    this.close();
    if (existsSync(this.file)) renameSync(this.file, `${this.file}.done`);
  }
}

/**
 * Cuts a last line without its newline off `file`, reading back from the end
 * only as far as the last newline: opening the journal to append (an MTA
 * keeping a held copy, each drain) costs a line, not the whole journal.
 */
function cutTornTail(file: string): void {
  const fd = openSync(file, 'r+');
  try {
    const size = fstatSync(fd).size;
    const chunk = Buffer.alloc(64 * 1024);
    let end = size;
    while (end > 0) {
      const start = Math.max(0, end - chunk.length);
      const n = readSync(fd, chunk, 0, end - start, start);
      const nl = chunk.subarray(0, n).lastIndexOf(0x0a);
      if (nl >= 0) {
        if (start + nl + 1 < size) ftruncateSync(fd, start + nl + 1);
        return;
      }
      end = start;
    }
    if (size > 0) ftruncateSync(fd, 0); // one torn line and nothing before it
  } finally {
    closeSync(fd);
  }
}
