import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { SpoolPartition } from './partition';

export interface SpoolOptions {
  /** The persistent path; partitions live under `<root>/spool/pNNN`. */
  root: string;
  /** This worker's number and the number of workers: worker w owns every partition p with p % workers == w. */
  worker: number;
  workers: number;
  segmentSize?: number;
  fsync?: boolean;
  logger?: Logger;
}

const PARTITION_RE = /^p(\d{3})$/;

/**
 * The partitions one worker owns. New mail goes to the worker's home partition
 * (number == worker); partitions left by a larger worker count are adopted, so
 * resizing an instance never strands queued mail.
 */
export class Spool {
  readonly home: SpoolPartition;
  readonly partitions: SpoolPartition[];

  private constructor(partitions: SpoolPartition[], home: SpoolPartition) {
    this.partitions = partitions;
    this.home = home;
  }

  static async open(options: SpoolOptions): Promise<Spool> {
    const base = join(options.root, 'spool');
    await mkdir(base, { recursive: true });
    const existing = (await readdir(base)).map((n) => PARTITION_RE.exec(n)).filter((m) => m !== null).map((m) => Number(m[1]));
    const mine = new Set(existing.filter((p) => p % options.workers === options.worker));
    mine.add(options.worker);
    const numbers = [...mine].sort((a, b) => a - b);
    const partitions = await Promise.all(
      numbers.map((n) =>
        SpoolPartition.open({
          dir: join(base, `p${String(n).padStart(3, '0')}`),
          segmentSize: options.segmentSize,
          fsync: options.fsync,
          logger: options.logger,
        }),
      ),
    );
    return new Spool(partitions, partitions[numbers.indexOf(options.worker)]);
  }

  get size(): number {
    return this.partitions.reduce((n, p) => n + p.size, 0);
  }

  async close(): Promise<void> {
    await Promise.all(this.partitions.map((p) => p.close()));
  }
}
