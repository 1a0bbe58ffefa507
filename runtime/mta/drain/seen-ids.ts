// The drain endpoint's dedupe store: every message id this node queued from a
// drain, with when, kept for drain.dedupe_retention. One per node (the primary
// holds it), durable (an append-only file, group-committed: one synced write
// per batch), so "queued" once answered stays "duplicate" for every later
// attempt, across restarts and worker-count changes.
import { mkdirSync, readFileSync, renameSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { durableFlags, writeFully } from '../../shared/durable-file';
import { GroupCommit } from '../../shared/group-commit';

interface Pending {
  data: Buffer;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** Where a node keeps the ids it received by drain. */
export function seenIdsPath(persistentPath: string): string {
  return join(persistentPath, 'drain', 'seen.log');
}

export class SeenIds {
  private readonly seen = new Map<string, number>();
  private position = 0;

  private constructor(private readonly fh: FileHandle) {}

  private readonly commit = new GroupCommit<Pending>(async (batch) => {
    const data = Buffer.concat(batch.map((p) => p.data));
    try {
      await writeFully(this.fh, [data], this.position);
      this.position += data.length;
      for (const p of batch) p.resolve();
    } catch (err) {
      for (const p of batch) p.reject(err as Error);
    }
  });

  /**
   * Loads `file`, keeping ids seen within `retentionMs` of `now`. The file is
   * rewritten without the expired ones at every start (a torn last line from a
   * crash goes too): its size stays that of the retention window.
   */
  static async open(file: string, retentionMs: number, options: { fsync?: boolean; now?: number } = {}): Promise<SeenIds> {
    const fsync = options.fsync ?? true;
    const cutoff = (options.now ?? Date.now()) - retentionMs;
    mkdirSync(dirname(file), { recursive: true });
    const kept = new Map<string, number>();
    let text = '';
    try {
      text = readFileSync(file, 'latin1');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    for (const line of text.split('\n')) {
      const m = /^(\S+) (\d+|-)$/.exec(line);
      if (!m) continue;
      if (m[2] === '-') kept.delete(m[1]);
      else if (Number(m[2]) >= cutoff) kept.set(m[1], Number(m[2]));
    }
    const compacted = Buffer.from([...kept].map(([id, at]) => `${id} ${at}\n`).join(''), 'latin1');
    const tmp = join(dirname(file), `.${Date.now()}.seen.tmp`);
    writeFileSync(tmp, compacted);
    if (fsync) syncPath(tmp);
    renameSync(tmp, file);
    if (fsync) syncPath(dirname(file));
    const fh = await open(file, durableFlags('existing', fsync));
    const store = new SeenIds(fh);
    for (const [id, at] of kept) store.seen.set(id, at);
    store.position = compacted.length;
    return store;
  }

  has(id: string): boolean {
    return this.seen.has(id);
  }

  get size(): number {
    return this.seen.size;
  }

  /** In memory only: for ids whose durable write failed (their spool records stand in until the next start). */
  remember(ids: readonly string[], at = Date.now()): void {
    for (const id of ids) this.seen.set(id, at);
  }

  /** Records ids as seen at `at`; resolves once durable. Everything added in one turn shares one write. */
  add(ids: readonly string[], at = Date.now()): Promise<void> {
    if (ids.length === 0) return Promise.resolve();
    const data = Buffer.from(ids.map((id) => `${id} ${at}\n`).join(''), 'latin1');
    return new Promise<void>((resolve, reject) => {
      this.commit.add({
        data,
        resolve: () => {
          for (const id of ids) this.seen.set(id, at);
          resolve();
        },
        reject,
      });
    });
  }

  /**
   * Forgets ids this node no longer holds because it drained them away to
   * another node: were that node later drained back here, `duplicate` would
   * make both sides drop the message. `volley drain` calls this for what a
   * destination acknowledged (it holds the persistent path's lock then, so it
   * is the file's only writer). Resolves once durable.
   */
  forget(ids: readonly string[]): Promise<void> {
    const known = ids.filter((id) => this.seen.has(id));
    if (known.length === 0) return Promise.resolve();
    const data = Buffer.from(known.map((id) => `${id} -\n`).join(''), 'latin1');
    return new Promise<void>((resolve, reject) => {
      this.commit.add({
        data,
        resolve: () => {
          for (const id of known) this.seen.delete(id);
          resolve();
        },
        reject,
      });
    });
  }

  async close(): Promise<void> {
    await this.commit.idle();
    await this.fh.close();
  }
}

function syncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
