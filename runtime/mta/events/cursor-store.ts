// One durable cursor per batch sink, `<events>/cursors/<sink>.json`: where the
// sink's dispatcher goes on after a restart. Written beside, synced, renamed
// over the old one and the directory synced: a crash leaves the old cursor or
// the new, never half of one. A cursor only moves past acknowledged batches,
// so a restart repeats at most what was in flight.
import { mkdirSync, readFileSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { errorCode, VolleyError } from '../../shared/errors';
import type { AckedAhead } from './dispatcher';
import type { Cursor } from './log-reader';

/** Numbers the temporary files of this process: two writes of one path at once must not share one. */
let tmpSeq = 0;

/**
 * Writes `body` to `path` so that a crash leaves the old content or the new.
 * Two writes may overlap (a new sink's first cursor and its first
 * acknowledgement; retention's sweep and a file shipped): each has a
 * temporary file of its own, or one would truncate the file the other is
 * about to rename into place.
 */
export async function writeFileDurably(path: string, body: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}-${++tmpSeq}.tmp`);
  try {
    const fh = await open(tmp, 'w', 0o644);
    try {
      await fh.writeFile(body);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    const dh = await open(dirname(path), 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export class CursorStore {
  readonly dir: string;

  constructor(eventsDir: string) {
    this.dir = join(eventsDir, 'cursors');
    mkdirSync(this.dir, { recursive: true });
  }

  path(sink: string): string {
    return join(this.dir, `${sink}.json`);
  }

  /** The sink's cursor; undefined for a sink that never ran. A damaged file is an error, not a silent restart from elsewhere. */
  load(sink: string): Cursor | undefined {
    let text: string;
    try {
      text = readFileSync(this.path(sink), 'utf8');
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return undefined;
      throw err;
    }
    try {
      const body = JSON.parse(text) as { producers?: Cursor };
      if (!body.producers || typeof body.producers !== 'object') throw new Error('no "producers"');
      return body.producers;
    } catch (err) {
      throw new VolleyError('ECURSOR', `the cursor of event sink "${sink}" (${this.path(sink)}) is unreadable: ${(err as Error).message}; remove it to start the sink at the end of the log (and replay what it missed)`, { cause: err });
    }
  }

  /** What the sink acknowledged ahead of its cursor when it was saved (none: undefined). */
  loadAcked(sink: string): AckedAhead | undefined {
    let body: { acked?: AckedAhead };
    try {
      body = JSON.parse(readFileSync(this.path(sink), 'utf8')) as { acked?: AckedAhead };
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return undefined;
      throw new VolleyError('ECURSOR', `the cursor of event sink "${sink}" (${this.path(sink)}) is unreadable: ${(err as Error).message}`, { cause: err });
    }
    const a = body.acked;
    if (a === undefined) return undefined;
    if (!Array.isArray(a.ids) || !a.ids.every((id) => typeof id === 'string') || !a.until || typeof a.until !== 'object') {
      throw new VolleyError('ECURSOR', `the cursor of event sink "${sink}" (${this.path(sink)}) has an unreadable "acked"; remove it to start the sink at the end of the log (and replay what it missed)`);
    }
    return a;
  }

  /** The cursor, and the events acknowledged ahead of it (batches acknowledged out of order): a restart sends neither again. */
  async save(sink: string, cursor: Cursor, acked?: AckedAhead): Promise<void> {
    await writeFileDurably(this.path(sink), `${JSON.stringify({ sink, updated: new Date().toISOString(), producers: cursor, ...(acked ? { acked } : {}) })}\n`);
  }
}
