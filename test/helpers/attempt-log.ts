import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseEventFile } from '../../runtime/mta/events/event-log';
import { waitUntil } from './proxy-fixtures';

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

/**
 * The events logged in `dir` for message `id`, once there is at least one
 * (waited for with the shared poll, up to `timeoutMs`), oldest first.
 */
export async function attemptsFor<T extends { message_id: string }>(dir: string, id: string, timeoutMs = 15_000): Promise<T[]> {
  const events = (): T[] => readAttempts<T>(dir).filter((e) => e.message_id === id);
  await waitUntil(() => events().length > 0, timeoutMs, () => `no attempt logged for ${id} in ${dir}`);
  return events();
}
