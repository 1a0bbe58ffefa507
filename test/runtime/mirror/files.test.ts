// What the mirror replicates and how: append-only files by offset, the rest
// whole, and the node-local files (its own state, the MTA's lock, the spool's
// disk reserve, temporary files, a SQLite file's WAL and shared memory) never;
// and the snapshot of a SQLite file being written, taken while its writer
// commits and checkpoints between the copy's steps (Debian's sqlite3 checks it).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { classify, sqliteSnapshot } from '../../../runtime/mirror/files';
import { tempDir } from '../../helpers/tmp';

/** Runs after each file copy the snapshot makes (tests: the writer going on between the database and its WAL). */
let mockAfterCopy: ((from: string) => void) | undefined;
jest.mock('node:fs/promises', () => {
  const actual = jest.requireActual<typeof import('node:fs/promises')>('node:fs/promises');
  return {
    ...actual,
    copyFile: async (from: string, to: string) => {
      await actual.copyFile(from, to);
      mockAfterCopy?.(from);
    },
  };
});

describe('classify', () => {
  it.each([
    ['spool/p0/000000000001.seg', 'append'],
    ['log/events/w0.20261205T000000000Z-000001.jsonl', 'append'],
    ['events/dead-letter/hook.jsonl', 'append'],
    ['node-id', 'whole'],
    ['drain/seen.log', 'whole'],
    ['log/events/cursors/s3.json', 'whole'],
    ['tls/self-signed.key', 'whole'],
    ['events/sqlite/acct/acct.20261205T030000000Z.open.sqlite', 'whole'],
    ['events/sqlite/acct/acct.20261205T030000000Z.sqlite', 'whole'],
  ])('%s is replicated (%s)', (path, kind) => {
    expect(classify(path)).toBe(kind);
  });

  it.each([
    'mirror/state.json',
    'mta.lock',
    'reserve/w0',
    'log/events/.cursor.123.tmp',
    'drain/.1733.seen.tmp',
    'spool/p0/x.mirror.tmp',
    'events/sqlite/acct/acct.20261205T030000000Z.open.sqlite-wal',
    'events/sqlite/acct/acct.20261205T030000000Z.open.sqlite-shm',
    'events/sqlite/acct/acct.20261205T030000000Z.open.sqlite-journal',
  ])('%s is never replicated', (path) => {
    expect(classify(path)).toBeUndefined();
  });
});

describe('sqliteSnapshot', () => {
  const dir = tempDir('volley-mirror-files-');
  let n = 0;

  /** A sink's open file: WAL, no automatic checkpoint (the test says when); commit returns the rows so far. */
  function writer(): { file: string; db: DatabaseSync; commit: (rows: number) => number } {
    const file = join(dir, `acct.${++n}.open.sqlite`);
    const db = new DatabaseSync(file);
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE events (event_id TEXT PRIMARY KEY, body TEXT)');
    const insert = db.prepare('INSERT INTO events VALUES (?, ?)');
    let rows = 0;
    const commit = (count: number): number => {
      db.exec('BEGIN');
      for (let i = 0; i < count; i++) insert.run(`ev-${rows++}`, 'x'.repeat(300));
      db.exec('COMMIT');
      return rows;
    };
    return { file, db, commit };
  }

  /** Debian's sqlite3 on the snapshot, written alone to a file: integrity and rows. */
  function check(snapshot: Buffer): { integrity: string; rows: number } {
    const file = join(dir, `check-${++n}.sqlite`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(file, snapshot);
    const out = execFileSync('sqlite3', [file, 'PRAGMA integrity_check;', 'SELECT count(*) FROM events;'], { encoding: 'utf8' }).trim().split('\n');
    return { integrity: out.slice(0, -1).join('\n'), rows: Number(out[out.length - 1]) };
  }

  afterEach(() => {
    mockAfterCopy = undefined;
  });

  it('a checkpoint between the database copy and the WAL copy: every committed row, one consistent database', async () => {
    const w = writer();
    try {
      w.commit(200);
      let copies = 0;
      mockAfterCopy = () => {
        if (++copies !== 1) return;
        // Pages of the first rows go into the database file after it was copied; their frames stay in the WAL.
        w.commit(100);
        w.db.exec('PRAGMA wal_checkpoint(PASSIVE)');
      };
      const snap = await sqliteSnapshot(w.file, join(dir, 'scratch', 'a.tmp'));
      expect(Buffer.isBuffer(snap)).toBe(true);
      expect(check(snap as Buffer)).toEqual({ integrity: 'ok', rows: 300 });
    } finally {
      w.db.close();
    }
  });

  it('a WAL restarted between the copies is copied again; one restarted at every attempt holds the snapshot back', async () => {
    const w = writer();
    try {
      w.commit(200);
      let copies = 0;
      mockAfterCopy = (from) => {
        if (from !== w.file || ++copies !== 1) return;
        // The whole WAL goes into the database and the WAL starts over with new rows: the database copy misses both.
        w.commit(100);
        w.db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
        w.commit(100);
      };
      const snap = await sqliteSnapshot(w.file, join(dir, 'scratch', 'b.tmp'));
      expect(copies).toBe(2);
      expect(check(snap as Buffer)).toEqual({ integrity: 'ok', rows: 400 });

      mockAfterCopy = (from) => {
        if (from !== w.file) return;
        w.db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
        w.commit(1);
      };
      expect(await sqliteSnapshot(w.file, join(dir, 'scratch', 'c.tmp'))).toBe('busy');
    } finally {
      w.db.close();
    }
  });

  it('a file rotated away meanwhile: nothing', async () => {
    expect(await sqliteSnapshot(join(dir, 'gone.open.sqlite'), join(dir, 'scratch', 'd.tmp'))).toBeUndefined();
  });
});
