// The secondary's durability order for one batch: the file-system calls that
// make it durable (fdatasync, rename, rm, the directory fsync) are recorded
// around the real ones, and the order checked: the log bytes durable before
// a small file that names them is renamed in, and deletions only after.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { applyBatch, type BatchOp } from '../../../runtime/mirror/apply';
import { tempDir } from '../../helpers/tmp';

/** Every durability step under the test's root, in order: `<call> <relative path>`. */
const mockSteps: string[] = [];
let mockRoot = '/nonexistent';
function mockRecord(call: string, path: string): void {
  if (path.startsWith(mockRoot)) mockSteps.push(`${call} ${relative(mockRoot, path) || '.'}`);
}

jest.mock('node:fs', () => {
  const actual = jest.requireActual<typeof import('node:fs')>('node:fs');
  return {
    ...actual,
    fdatasync: (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      mockRecord('fdatasync', actual.readlinkSync(`/proc/self/fd/${fd}`));
      actual.fdatasync(fd, cb);
    },
  };
});
jest.mock('node:fs/promises', () => {
  const actual = jest.requireActual<typeof import('node:fs/promises')>('node:fs/promises');
  return {
    ...actual,
    rename: async (from: string, to: string) => {
      mockRecord('rename', to);
      return actual.rename(from, to);
    },
    rm: async (path: string, opts?: import('node:fs').RmOptions) => {
      if (!path.endsWith('.tmp')) mockRecord('rm', path);
      return actual.rm(path, opts);
    },
  };
});
jest.mock('../../../runtime/mirror/state', () => {
  const actual = jest.requireActual<typeof import('../../../runtime/mirror/state')>('../../../runtime/mirror/state');
  return {
    ...actual,
    fsyncDir: (dir: string) => {
      mockRecord('fsyncDir', dir);
      actual.fsyncDir(dir);
    },
  };
});

const base = tempDir('volley-mirror-apply-');
let n = 0;
function secondary(): string {
  const root = join(base, `s${++n}`);
  mkdirSync(join(root, 'log', 'events', 'cursors'), { recursive: true });
  mockRoot = root;
  mockSteps.length = 0;
  return root;
}

const sum = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('applyBatch durability order', () => {
  it('makes the log bytes durable before it renames in the cursor naming them, and deletes the file retention removed only after that', async () => {
    const root = secondary();
    // This node holds the old event file (a sink's cursor in it) and the start of the next.
    const old = 'log/events/w0-000001.jsonl';
    const log = 'log/events/w0-000002.jsonl';
    const cursor = 'log/events/cursors/hook.json';
    writeFileSync(join(root, old), '{"e":1}\n');
    writeFileSync(join(root, log), '{"e":2}\n');
    writeFileSync(join(root, cursor), JSON.stringify({ file: 'w0-000001.jsonl', offset: 0 }));
    // The primary's batch, in its order: retention deleted the old file, new events, the cursor past them.
    const events = Buffer.from('{"e":3}\n{"e":4}\n');
    const moved = Buffer.from(JSON.stringify({ file: 'w0-000002.jsonl', offset: 24 }));
    const ops: BatchOp[] = [
      { op: 'delete', path: old },
      { op: 'write', path: log, offset: 8, len: events.length, sha256: sum(events) },
      { op: 'replace', path: cursor, len: moved.length, sha256: sum(moved) },
    ];
    await applyBatch(root, ops, Buffer.concat([events, moved]));

    expect(readFileSync(join(root, log), 'utf8')).toBe('{"e":2}\n{"e":3}\n{"e":4}\n');
    expect(readFileSync(join(root, cursor), 'utf8')).toBe(moved.toString());
    expect(existsSync(join(root, old))).toBe(false);
    expect(readdirSync(join(root, 'log/events/cursors'))).toEqual(['hook.json']);

    const at = (step: string): number => {
      const i = mockSteps.indexOf(step);
      if (i < 0) throw new Error(`no step "${step}" in ${JSON.stringify(mockSteps)}`);
      return i;
    };
    // A power cut after the rename must not leave a cursor past the bytes that survived.
    expect(at(`fdatasync ${log}`)).toBeLessThan(at(`rename ${cursor}`));
    // Nor after the deletion a cursor still naming the deleted file: the rename is durable first.
    expect(at(`rename ${cursor}`)).toBeLessThan(at('fsyncDir log/events/cursors'));
    expect(at('fsyncDir log/events/cursors')).toBeLessThan(at(`rm ${old}`));
    // And the deletion itself durable before the batch is acknowledged (the call resolved).
    expect(mockSteps[mockSteps.length - 1]).toBe('fsyncDir log/events');
  });

  it('renames a SQLite snapshot in, durably, before the sink cursor that counts its rows, and drops the old copy\'s WAL first', async () => {
    const root = secondary();
    const db = 'events/sqlite/acct/acct.20261205T030000000Z.open.sqlite';
    const cursor = 'log/events/cursors/acct.json';
    mkdirSync(join(root, 'events/sqlite/acct'), { recursive: true });
    writeFileSync(join(root, db), 'old copy');
    writeFileSync(join(root, `${db}-wal`), 'a WAL that is not this copy\'s');
    const snapshot = Buffer.from('snapshot');
    const counted = Buffer.from('{"rows":10}');
    await applyBatch(
      root,
      [
        { op: 'replace', path: db, len: snapshot.length, sha256: sum(snapshot) },
        { op: 'replace', path: cursor, len: counted.length, sha256: sum(counted) },
      ],
      Buffer.concat([snapshot, counted]),
    );
    expect(readdirSync(join(root, 'events/sqlite/acct'))).toEqual(['acct.20261205T030000000Z.open.sqlite']);
    const at = (step: string): number => mockSteps.indexOf(step);
    expect(at(`rm ${db}-wal`)).toBeGreaterThanOrEqual(0);
    expect(at(`rm ${db}-wal`)).toBeLessThan(at(`rename ${db}`));
    expect(at(`rename ${db}`)).toBeLessThan(at('fsyncDir events/sqlite/acct'));
    expect(at('fsyncDir events/sqlite/acct')).toBeLessThan(at(`rename ${cursor}`));
  });

  it('keeps the batch order for a path deleted and written again, or swapped twice, in one batch', async () => {
    const root = secondary();
    const seg = 'spool/p0/000000000001.seg';
    const small = 'drain/seen.log';
    mkdirSync(join(root, 'spool/p0'), { recursive: true });
    writeFileSync(join(root, seg), 'old bytes\n');
    const fresh = Buffer.from('new\n');
    const v1 = Buffer.from('one');
    const v2 = Buffer.from('two');
    await applyBatch(
      root,
      [
        { op: 'replace', path: small, len: 3, sha256: sum(v1) },
        { op: 'delete', path: seg },
        { op: 'write', path: seg, offset: 0, len: fresh.length, sha256: sum(fresh) },
        { op: 'replace', path: small, len: 3, sha256: sum(v2) },
      ],
      Buffer.concat([v1, fresh, v2]),
    );
    expect(readFileSync(join(root, seg), 'utf8')).toBe('new\n');
    expect(readFileSync(join(root, small), 'utf8')).toBe('two');
    expect(readdirSync(join(root, 'drain'))).toEqual(['seen.log']);
    // A small file replaced and then deleted in one batch stays deleted (and leaves no temporary file).
    await applyBatch(root, [{ op: 'replace', path: small, len: 3, sha256: sum(v1) }, { op: 'delete', path: small }], v1);
    expect(readdirSync(join(root, 'drain'))).toEqual([]);
  });

  it('swaps in no small file and leaves no temporary file when the batch is refused', async () => {
    const root = secondary();
    const cursor = 'log/events/cursors/hook.json';
    writeFileSync(join(root, cursor), 'before');
    const moved = Buffer.from('after');
    const bad = Buffer.from('xyz');
    await expect(
      applyBatch(
        root,
        [
          { op: 'replace', path: cursor, len: moved.length, sha256: sum(moved) },
          { op: 'write', path: 'log/events/w0-000001.jsonl', offset: 0, len: 3, sha256: 'f'.repeat(64) },
        ],
        Buffer.concat([moved, bad]),
      ),
    ).rejects.toMatchObject({ code: 'EMIRRORSUM' });
    expect(readFileSync(join(root, cursor), 'utf8')).toBe('before');
    expect(readdirSync(join(root, 'log/events/cursors'))).toEqual(['hook.json']);
    expect(mockSteps.filter((s) => s.startsWith('rename'))).toEqual([]);
  });
});
