// The `sqlite` event sink: accounting files, one row per event (schema in
// sqlite-schema.ts and README.md), rotated by size and age. A rotated file is
// checkpointed, switched out of WAL, closed, fsynced and renamed to its final
// name, never to be written again, so a sidecar (or the S3 shipper, through
// shipSource()) takes only finished files.
//
// Why node:sqlite (DatabaseSync) and not better-sqlite3: it ships inside the
// Node 24 we pin, so there is no native build and nothing to download (a
// better-sqlite3 install fetches prebuilt binaries from GitHub, unreachable
// from where we build, and would tie the bundle to a native addon). On Node
// 24.21 loading it prints no ExperimentalWarning (checked by the test), so
// nothing is suppressed.
//
// Its calls are synchronous: a batch's transaction (up to 1,000 rows, the
// unique event_id index only, one fsync of the WAL; the readers' indexes are
// built when the file is closed) blocks the primary's event loop, about 20 ms
// per 1,000 rows on the shared 2-core dev box, i.e. ~2% of the loop at 1,000
// events/s. Cheaper than a worker thread's hand-offs and plainer; if the
// primary's latency ever suffers, this is the piece to move to a worker.
//
// Durability: deliver() resolves only after the batch's COMMIT with
// synchronous=FULL, which in WAL mode fsyncs the WAL at every commit; the
// dispatcher moves the sink's cursor past a batch once deliver() resolved, so
// NORMAL (which may lose the last commits on power loss) would lose events.
//
// After a crash the `.open` file is reopened and continued, not closed: the
// dispatcher sends the batches after its cursor again, and some may already be
// in that file; INSERT OR IGNORE on the unique event_id turns them into
// nothing only if they go to the same file. For the same reason a full or old
// file is rotated after a batch is committed, not before the next one, and a
// reopened file is not rotated by age until the dispatcher has had time to
// resend (RECOVERY_GRACE_MS) or a batch arrived. Duplicates across files remain
// possible only if a crash falls between a rotation and the dispatcher's next
// cursor save: readers who must count exactly group by event_id.

import { rmSync, existsSync, mkdirSync, renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { SqliteSinkConfig } from '../../../shared/config/events';
import { VolleyError } from '../../../shared/errors';
import type { EventSink, ShipSource, SinkBatch, SinkDeps, SinkStats } from '../types';
import { brokenPath, finalPath, freshStamp, fsyncPath, openFiles, openPath, sqliteShipSource, type SinkFile } from './sqlite-files';
import { INDEX_SQL, INSERT_SQL, SCHEMA_SQL, SCHEMA_VERSION, eventRow } from './sqlite-schema';

/** One transaction per batch: big batches make the per-commit fsync cheap per row. */
export const SQLITE_BATCH_SIZE = 1000;
export const SQLITE_MAX_WAIT_MS = 200;
/** One writer per file: SQLite serialises writers anyway. */
export const SQLITE_CONCURRENCY = 1;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 30_000;
/** How long a file reopened after a crash is kept open for the dispatcher to resend into it. */
export const RECOVERY_GRACE_MS = 30_000;

interface OpenFile {
  db: DatabaseSync;
  insert: StatementSync;
  path: string;
  stamp: string;
  /** The file's age limit: start + max_age. A batch that finds it passed rotates the file. */
  ageDeadlineMs: number;
  /** When the timer closes an idle file: the age limit, or for a file reopened after a crash, not before the grace. */
  deadlineMs: number;
}

export function createSqliteSink(config: SqliteSinkConfig, deps: SinkDeps): EventSink & { shipSource(): ShipSource; handOver(): boolean } {
  const dir = config.dir ?? join(deps.persistentPath, 'events', 'sqlite', config.name);
  const name = config.name;
  const now = deps.now ?? Date.now;
  const log = deps.logger.child({ sink: name, sinkType: 'sqlite' });
  const stats: SinkStats = { delivered: 0, deliveredEvents: 0, retries: 0, deadLettered: 0 };
  let current: OpenFile | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  /** Backoff waits to cut short on close(). */
  const sleepers = new Set<() => void>();

  mkdirSync(dir, { recursive: true });
  recover();

  /** Opens (or creates) `path` for writing; undefined if it holds another schema version. */
  function openDb(path: string): { db: DatabaseSync; insert: StatementSync } | undefined {
    const db = new DatabaseSync(path);
    try {
      const version = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version;
      if (version !== 0 && version !== SCHEMA_VERSION) {
        db.close();
        return undefined;
      }
      db.exec('PRAGMA journal_mode = WAL');
      db.exec('PRAGMA synchronous = FULL');
      db.exec(SCHEMA_SQL);
      return { db, insert: db.prepare(INSERT_SQL) };
    } catch (err) {
      db.close();
      throw err;
    }
  }

  function openNew(): OpenFile {
    const startedMs = now();
    const stamp = freshStamp(dir, name, startedMs);
    const path = openPath(dir, name, stamp);
    let opened: ReturnType<typeof openDb>;
    try {
      opened = openDb(path);
    } catch (err) {
      // A full disk, say: leave no empty .open file behind for every retry.
      for (const p of [path, path + '-wal', path + '-shm']) rmSync(p, { force: true });
      throw err;
    }
    if (!opened) throw new VolleyError('SQLITE_SINK_SCHEMA', `${path}: a new file has a foreign schema version`);
    // The new file's directory entry must survive power loss with its rows.
    fsyncPath(dir);
    log.info({ file: path }, 'sqlite sink: file opened');
    return adopt({ ...opened, path, stamp, ageDeadlineMs: startedMs + config.maxAgeMs, deadlineMs: startedMs + config.maxAgeMs });
  }

  function adopt(file: OpenFile): OpenFile {
    current = file;
    arm();
    return file;
  }

  /** Wakes at the current file's deadline so an idle file still closes on time. */
  function arm(): void {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (!current || closed) return;
    timer = setTimeout(tick, Math.max(0, current.deadlineMs - now()));
    timer.unref();
  }

  function tick(): void {
    timer = undefined;
    if (closed || !current) return;
    if (now() >= current.deadlineMs) rotate('age');
    else arm();
  }

  /**
   * Closes the current file for good: commit is done, so checkpoint the WAL
   * into the file, leave WAL mode (a reader then needs no -wal/-shm beside it
   * and a read-only copy opens anywhere), close, fsync, rename, fsync the
   * directory. A failure leaves the `.open` file for the next start.
   */
  function rotate(why: string): void {
    const file = current;
    if (!file) return;
    current = undefined;
    if (timer) clearTimeout(timer);
    timer = undefined;
    try {
      finish(file.db, file.path, file.stamp);
      log.info({ file: finalPath(dir, name, file.stamp), why }, 'sqlite sink: file closed');
    } catch (err) {
      stats.lastError = `rotate ${file.path}: ${(err as Error).message}`;
      log.error({ err, file: file.path }, 'sqlite sink: closing a file failed; it stays .open and is closed at the next start');
      if (file.db.isOpen) file.db.close();
    }
  }

  /** `ours`: a file of this schema version, which gets its readers' indexes now (see INDEX_SQL). */
  function finish(db: DatabaseSync, path: string, stamp: string, ours = true): void {
    if (ours) db.exec(INDEX_SQL);
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    const rows = (db.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
    db.exec('PRAGMA journal_mode = DELETE');
    db.close();
    for (const side of ['-wal', '-shm']) {
      if (existsSync(path + side)) throw new VolleyError('SQLITE_SINK_WAL_LEFT', `${path}${side} is still there after the checkpoint`);
    }
    if (rows === 0) {
      // Created but never committed to (a crash before the first COMMIT): nothing to account for.
      unlinkSync(path);
    } else {
      fsyncPath(path);
      renameSync(path, finalPath(dir, name, stamp));
    }
    fsyncPath(dir);
  }

  /**
   * At start: every `.open` file but the newest is closed (a rotation that
   * crashed halfway); the newest is reopened and continued, see the top of
   * this file. One SQLite cannot open is moved aside as `.broken`, loudly.
   */
  function recover(): void {
    const open = openFiles(dir, name);
    const newest = open.pop();
    for (const f of open) closeLeftover(f);
    if (!newest) return;
    const opened = tryOpen(newest);
    if (!opened) return;
    log.warn({ file: newest.path }, 'sqlite sink: continuing the file a crash left open');
    const ageDeadlineMs = newest.startedMs + config.maxAgeMs;
    adopt({ ...opened, path: newest.path, stamp: newest.stamp, ageDeadlineMs, deadlineMs: Math.max(ageDeadlineMs, now() + RECOVERY_GRACE_MS) });
  }

  function closeLeftover(f: SinkFile): void {
    const opened = tryOpen(f);
    if (!opened) return;
    try {
      finish(opened.db, f.path, f.stamp);
      log.warn({ file: finalPath(dir, name, f.stamp) }, 'sqlite sink: closed a file a crash left open');
    } catch (err) {
      if (opened.db.isOpen) opened.db.close();
      log.error({ err, file: f.path }, 'sqlite sink: could not close a file a crash left open; it stays');
    }
  }

  function tryOpen(f: SinkFile): { db: DatabaseSync; insert: StatementSync } | undefined {
    try {
      const opened = openDb(f.path);
      if (opened) return opened;
      // Written by another schema version: close it as it is rather than mix rows.
      const db = new DatabaseSync(f.path);
      finish(db, f.path, f.stamp, false);
      log.warn({ file: f.path }, 'sqlite sink: closed a left-open file of another schema version');
      return undefined;
    } catch (err) {
      const aside = brokenPath(dir, name, f.stamp);
      renameSync(f.path, aside);
      for (const side of ['-wal', '-shm']) if (existsSync(f.path + side)) renameSync(f.path + side, aside + side);
      fsyncPath(dir);
      log.error({ err, file: aside }, 'sqlite sink: a file left open could not be opened; moved aside (not shipped), starting a new one');
      return undefined;
    }
  }

  function writeBatch(batch: SinkBatch): void {
    const file = current ?? openNew();
    file.db.exec('BEGIN IMMEDIATE');
    try {
      for (let i = 0; i < batch.events.length; i++) file.insert.run(...eventRow(batch.events[i], batch.lines[i]));
      file.db.exec('COMMIT');
    } catch (err) {
      if (file.db.isTransaction) file.db.exec('ROLLBACK');
      throw err;
    }
  }

  function afterBatch(): void {
    const file = current;
    if (!file) return;
    const { page_count } = file.db.prepare('PRAGMA page_count').get() as { page_count: number };
    const { page_size } = file.db.prepare('PRAGMA page_size').get() as { page_size: number };
    if (page_count * page_size >= config.maxSize) rotate('size');
    else if (now() >= file.ageDeadlineMs) rotate('age');
  }

  function pause(ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const wake = () => {
        clearTimeout(t);
        sleepers.delete(wake);
        reject(closedError());
      };
      const t = setTimeout(() => {
        sleepers.delete(wake);
        resolve();
      }, ms);
      sleepers.add(wake);
    });
  }

  function closedError(): VolleyError {
    return new VolleyError('SINK_CLOSED', `sqlite sink "${name}" is closed; the batch is read again after a restart`);
  }

  return {
    name,
    batchSize: SQLITE_BATCH_SIZE,
    maxWaitMs: SQLITE_MAX_WAIT_MS,
    concurrency: SQLITE_CONCURRENCY,
    // Sent what was ready, a batch at the e2e bench's 1,500 events/s held
    // ~60 rows, so ~25 synchronous commits (each an fsync of the WAL on the
    // primary's event loop) a second; filled for up to 200 ms, ~5.
    fillBatches: true,

    async deliver(batch: SinkBatch): Promise<void> {
      // A malformed batch is the dispatcher's bug: refuse it whole and loudly,
      // rather than retry forever something that can never be written.
      if (batch.events.length !== batch.lines.length) {
        throw new VolleyError('SINK_BAD_BATCH', `batch has ${batch.events.length} events but ${batch.lines.length} lines`);
      }
      const bad = batch.events.findIndex((e, i) => typeof e !== 'object' || e === null || typeof batch.lines[i] !== 'string');
      if (bad >= 0) throw new VolleyError('SINK_BAD_BATCH', `batch entry ${bad} is not an event object with its line`);
      let delay = RETRY_MIN_MS;
      for (;;) {
        if (closed) throw closedError();
        try {
          if (batch.events.length > 0) writeBatch(batch);
          break;
        } catch (err) {
          // SQLITE_FULL, an I/O error: the transaction was rolled back, the
          // connection stays usable (SQLite's promise), so the same file is
          // written again after a pause.
          stats.retries++;
          stats.lastError = (err as Error).message;
          log.error({ err, retryInMs: delay }, 'sqlite sink: writing a batch failed; retrying');
          await pause(delay);
          delay = Math.min(delay * 2, RETRY_MAX_MS);
        }
      }
      stats.delivered++;
      stats.deliveredEvents += batch.events.length;
      stats.lastSuccess = new Date(now()).toISOString();
      // The batch is durable whatever happens next: a failed rotation is logged, not the batch's failure.
      try {
        afterBatch();
      } catch (err) {
        log.error({ err }, 'sqlite sink: checking the file for rotation failed');
      }
    },

    /**
     * Closes the open file for good, as a rotation would: a stopping node may
     * never start again, and its last rows must reach the sidecar and S3.
     * The dispatcher should save its cursor before closing its sinks, or the
     * next start writes its last batch again into a new file.
     */
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      for (const wake of [...sleepers]) wake();
      rotate('close');
    },

    stats(): SinkStats {
      return { ...stats };
    },

    // Only ever called with nothing in flight (the event service checks): the file closes after its last commit.
    handOver(): boolean {
      if (closed || !current) return false;
      rotate('drain');
      return true;
    },

    shipSource(): ShipSource {
      return sqliteShipSource(dir, name);
    },
  };
}
