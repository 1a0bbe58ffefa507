// What the events acceptance tests (a real MTA, real peers) read back from a
// node: the event log's raw lines by event_id, a sink's durable cursor against
// the end of the log, and SQLite accounting files as Debian's sqlite3 sees them.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseEventFile } from '../../runtime/mta/events/event-log';
import { endCursor, type Cursor } from '../../runtime/mta/events/log-reader';

/** The complete lines of one event-log text (a last line without its newline is still being written). */
export function completeLines(text: string): string[] {
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean);
}

/** Every complete line of the event-log files in `dir`, keyed by its event_id; a repeated id is an error. */
export function eventLines(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir).filter((n) => parseEventFile(n)).sort()) {
    for (const line of completeLines(readFileSync(join(dir, f), 'utf8'))) addLine(out, line, f);
  }
  return out;
}

/** Adds one event line to `into` by its event_id, refusing a second line with the same id. */
export function addLine(into: Map<string, string>, line: string, where: string): void {
  const id = (JSON.parse(line) as { event_id?: unknown }).event_id;
  if (typeof id !== 'string') throw new Error(`${where}: a line without an event_id: ${line.slice(0, 200)}`);
  if (into.has(id)) throw new Error(`${where}: event_id ${id} twice`);
  into.set(id, line);
}

/**
 * Whether the batch sink `sink` has acknowledged everything in the log: its
 * durable cursor (`cursors/<sink>.json`, saved after each acknowledged batch)
 * stands at the end of every producer's newest file.
 */
export function sinkCaughtUp(dir: string, sink: string): boolean {
  const path = join(dir, 'cursors', `${sink}.json`);
  if (!existsSync(path)) return false;
  let saved: Cursor;
  try {
    saved = (JSON.parse(readFileSync(path, 'utf8')) as { producers: Cursor }).producers;
  } catch {
    return false; // being replaced: the next poll reads the new one
  }
  const end = endCursor(dir);
  return Object.entries(end).every(([producer, pos]) => saved[producer]?.file === pos.file && saved[producer].offset === pos.offset);
}

export interface AccountingRow {
  event_id: string;
  json: string;
  kind: string;
  status: string | null;
  recipient: string | null;
}

/** The rows of an accounting file, read by Debian's sqlite3, read-only (a reader must not change a file). */
export function sqliteRows(file: string): AccountingRow[] {
  const out = execFileSync('sqlite3', ['-readonly', '-json', file, 'SELECT event_id, json, kind, status, recipient FROM events ORDER BY id'], { encoding: 'utf8' });
  return out.trim() ? (JSON.parse(out) as AccountingRow[]) : [];
}

/** One value of a pragma or query, as sqlite3 prints it. */
export function sqliteValue(file: string, sql: string): string {
  return execFileSync('sqlite3', ['-readonly', file, sql], { encoding: 'utf8' }).trim();
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function sha256File(file: string): string {
  return sha256(readFileSync(file));
}
