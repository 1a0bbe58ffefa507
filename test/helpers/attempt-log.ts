import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Every complete line of the attempt logs in `dir`, parsed. The MTA may be
 * appending while a test reads: a last line without its newline is still
 * being written and is left for the next read, not parsed half-way.
 */
export function readAttempts<T = Record<string, unknown>>(dir: string): T[] {
  if (!existsSync(dir)) return [];
  const out: T[] = [];
  for (const f of readdirSync(dir).sort()) {
    const text = readFileSync(join(dir, f), 'utf8');
    const complete = text.slice(0, text.lastIndexOf('\n') + 1);
    for (const line of complete.split('\n')) if (line) out.push(JSON.parse(line) as T);
  }
  return out;
}
