import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseEventFile } from '../../runtime/mta/events/event-log';

/**
 * Every complete line of the event-log files in `dir` (not the cursors or the
 * skipped record beside them), parsed. The MTA may be
 * appending while a test reads: a last line without its newline is still
 * being written and is left for the next read, not parsed half-way.
 */
export function readAttempts<T = Record<string, unknown>>(dir: string): T[] {
  if (!existsSync(dir)) return [];
  const out: T[] = [];
  for (const f of readdirSync(dir).filter((n) => parseEventFile(n)).sort()) {
    let text: string;
    try {
      text = readFileSync(join(dir, f), 'utf8');
    } catch (err) {
      // Rotated away between the listing and the read: its lines are in the renamed file, read next time.
      if ((err as { code?: string }).code === 'ENOENT') continue;
      throw err;
    }
    const complete = text.slice(0, text.lastIndexOf('\n') + 1);
    for (const line of complete.split('\n')) if (line) out.push(JSON.parse(line) as T);
  }
  return out;
}
