// The drained node's spool, read directly by `volley drain` once the MTA has
// stopped (the drain then holds the persistent path's lock, so nothing else
// writes it): every partition's queued messages, each read back with its
// checksum verified and turned into what the destination needs, and the
// `drained` done records that remove what a destination acknowledged.
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { DrainMessageHeader, DrainRecord } from '../protocol';
import { SpoolPartition } from '../../spool/partition';
import { expiresAt, type SpoolEntry } from '../../spool/types';
import { SeenIds, seenIdsPath } from '../seen-ids';

const PARTITION_RE = /^p\d{3}$/;

export class LocalSpool {
  private constructor(
    private readonly partitions: SpoolPartition[],
    private readonly maxLifetimeMs: number,
    /** Ids this node took in by drain (its dedupe store), when it ever took any. */
    private readonly seen?: SeenIds,
  ) {}

  static async open(persistentPath: string, maxLifetimeMs: number): Promise<LocalSpool> {
    const base = join(persistentPath, 'spool');
    const names = existsSync(base) ? readdirSync(base).filter((n) => PARTITION_RE.test(n)).sort() : [];
    const partitions = await Promise.all(names.map((n) => SpoolPartition.open({ dir: join(base, n) })));
    // Retention does not matter here: the drain only forgets ids, and the MTA compacts the file at its next start.
    const seenFile = seenIdsPath(persistentPath);
    const seen = existsSync(seenFile) ? await SeenIds.open(seenFile, Number.MAX_SAFE_INTEGER) : undefined;
    return new LocalSpool(partitions, maxLifetimeMs, seen);
  }

  get size(): number {
    return this.partitions.reduce((n, p) => n + p.size, 0);
  }

  /** Every queued entry now, oldest first within each partition (the index keeps insertion order). */
  entries(): SpoolEntry[] {
    return this.partitions.flatMap((p) => [...p.entries()]);
  }

  has(id: string): boolean {
    return this.partitions.some((p) => p.get(id) !== undefined);
  }

  /** The message as a destination takes it; throws (code ECORRUPT) when its record cannot be read. */
  async record(entry: SpoolEntry): Promise<DrainRecord> {
    const partition = entry.owner as SpoolPartition;
    const { envelope, body } = await partition.read(entry);
    const header: DrainMessageHeader = {
      id: envelope.id,
      from: envelope.from,
      to: entry.to.slice(),
      received: envelope.received,
      // The source's lifetime (or the one it was drained in with), fixed now: a destination with
      // another max_lifetime must not extend (or cut) it.
      expires: expiresAt(envelope, this.maxLifetimeMs),
      next: entry.next,
      attempts: entry.attempts,
      pool: envelope.pool,
      vmta: envelope.vmta,
      meta: envelope.meta,
      client: envelope.client,
      via_original: envelope.via,
      size: body.length,
    };
    return { header, body };
  }

  /** Removes acknowledged messages (done records, reason `drained`); ids no longer queued are skipped. */
  async markDrained(ids: readonly string[]): Promise<void> {
    // Forgotten first: were these messages drained back here later, a remembered
    // id would be answered `duplicate` and dropped by both nodes. A crash after
    // this and before the done records only leaves them queued here, as before.
    await this.seen?.forget(ids);
    await Promise.all(
      ids.map(async (id) => {
        for (const p of this.partitions) if (p.get(id)) return p.markDone({ id, reason: 'drained' });
      }),
    );
  }

  async close(): Promise<void> {
    await Promise.all(this.partitions.map((p) => p.close()));
    await this.seen?.close();
  }
}
