import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { SpoolPartition } from './partition';
import { DiskReserve, type MinFree } from './disk-reserve';

export interface SpoolOptions {
  /** The persistent path; partitions live under `<root>/spool/pNNN`. */
  root: string;
  /** This worker's number and the number of workers: worker w owns every partition p with p % workers == w. */
  worker: number;
  workers: number;
  segmentSize?: number;
  fsync?: boolean;
  /** Write, then fdatasync (partition.ts): under a sync HA mirror, so its barrier overlaps the local sync. */
  syncAfterWrite?: boolean;
  logger?: Logger;
  /** `spool.min_free` and `spool.reserve`; absent, no reserve (tests of other things). */
  space?: { minFree: MinFree; reserve: number; checkIntervalMs?: number };
}

const PARTITION_RE = /^p(\d{3})$/;
const RESERVE_RE = /^w(\d+)$/;

/**
 * The partitions one worker owns. New mail goes to the worker's home partition
 * (number == worker); partitions left by a larger worker count are adopted, so
 * resizing an instance never strands queued mail.
 */
export class Spool {
  readonly home: SpoolPartition;
  readonly partitions: SpoolPartition[];
  /** This worker's reserve: its partitions' state records and its attempt log draw on it. */
  readonly reserve?: DiskReserve;

  private constructor(partitions: SpoolPartition[], home: SpoolPartition, reserve?: DiskReserve) {
    this.partitions = partitions;
    this.home = home;
    this.reserve = reserve;
  }

  static async open(options: SpoolOptions): Promise<Spool> {
    const base = join(options.root, 'spool');
    await mkdir(base, { recursive: true });
    const existing = (await readdir(base)).map((n) => PARTITION_RE.exec(n)).filter((m) => m !== null).map((m) => Number(m[1]));
    // One reserve file per worker, beside the spool (whose directory holds only
    // partitions); those of workers a smaller count no longer has go.
    const reserveDir = join(options.root, 'reserve');
    await mkdir(reserveDir, { recursive: true });
    for (const n of await readdir(reserveDir)) {
      const m = RESERVE_RE.exec(n);
      if (m && Number(m[1]) >= options.workers) await rm(join(reserveDir, n), { force: true });
    }
    const reserve = options.space
      ? await DiskReserve.open({
          file: join(reserveDir, `w${options.worker}`),
          bytes: options.space.reserve,
          minFree: options.space.minFree,
          checkIntervalMs: options.space.checkIntervalMs,
          logger: options.logger,
        })
      : undefined;
    const mine = new Set(existing.filter((p) => p % options.workers === options.worker));
    mine.add(options.worker);
    const numbers = [...mine].sort((a, b) => a - b);
    const partitions = await Promise.all(
      numbers.map((n) =>
        SpoolPartition.open({
          dir: join(base, `p${String(n).padStart(3, '0')}`),
          segmentSize: options.segmentSize,
          fsync: options.fsync,
          syncAfterWrite: options.syncAfterWrite,
          logger: options.logger,
          reserve,
        }),
      ),
    );
    return new Spool(partitions, partitions[numbers.indexOf(options.worker)], reserve);
  }

  get size(): number {
    return this.partitions.reduce((n, p) => n + p.size, 0);
  }

  async close(): Promise<void> {
    await Promise.all(this.partitions.map((p) => p.close()));
    await this.reserve?.close();
  }
}
