// `volley queue show <id>`'s history: a message's event-log lines, read from the files on disk.
import { createReadStream, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { errorCode } from '../../shared/errors';
import { eventsDir, parseEventFile } from '../events/event-log';

/**
 * Every event-log line of one message (its attempts, bounces, purge...), oldest first, from the files still
 * under the persistent path (shipped and deleted files are in the archive).
 * An admin lookup, not a hot path: it reads the files line by line.
 */
export async function attemptHistory(persistentPath: string, id: string): Promise<unknown[]> {
  const dir = eventsDir(persistentPath);
  if (!id || !existsSync(dir)) return [];
  const found: { time: string }[] = [];
  for (const f of readdirSync(dir).filter((n) => parseEventFile(n))) {
    const lines = createInterface({ input: createReadStream(join(dir, f), 'utf8'), crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        if (!line.includes(id)) continue;
        try {
          const e = JSON.parse(line) as { message_id?: string; time: string };
          if (e.message_id === id) found.push(e);
        } catch {
          // a torn last line after a crash: skip it
        }
      }
    } catch (err) {
      // Shipped and deleted between the listing and now (the s3 sink does so at any moment): its lines are in the
      // archive, as those of files deleted earlier. Failing the whole lookup for it answered a 500 instead.
      if (errorCode(err) !== 'ENOENT') throw err;
    }
  }
  return found.sort((a, b) => a.time.localeCompare(b.time));
}
