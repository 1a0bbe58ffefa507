// How long a closed event-log file stays on the node, and the S3 shipper's
// view of them. A closed file goes once every batch sink (and every replay
// running) has read past it and, when the s3 sink ships `events`, once S3
// holds it (unless keep_local). With no sink at all nothing reads the files
// and nothing is deleted: the log stays as the attempt log always did.
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Logger } from 'pino';
import { errorCode } from '../../shared/errors';
import { writeFileDurably } from './cursor-store';
import { listEventFiles } from './event-log';
import { compareFiles, type Cursor } from './log-reader';
import type { ShipSource } from './types';

export interface RetentionOptions {
  dir: string;
  logger: Logger;
  /** The positions every batch sink and replay has acknowledged up to. */
  positions: () => Cursor[];
  /** Batch sinks are configured: their cursors decide. */
  hasBatchSinks: boolean;
  /** The s3 sink ships `events`: a file also waits for S3. */
  shipsEvents: boolean;
  /** s3 keep_local: shipped files stay. */
  keepLocal: boolean;
}

export class Retention implements ShipSource {
  readonly kind = 'events' as const;
  /** Closed files S3 holds: `<events>/shipped.json`, so a restart does not ship them again. */
  private readonly inS3: Set<string>;
  private running?: Promise<void>;

  constructor(private readonly options: RetentionOptions) {
    this.inS3 = new Set(readShipped(this.shippedPath));
  }

  private get shippedPath(): string {
    return join(this.options.dir, 'shipped.json');
  }

  /** Closed files S3 does not have yet, oldest first (by when each was started). */
  async closedFiles(): Promise<string[]> {
    return this.closed()
      .filter((f) => !this.inS3.has(f))
      .sort((a, b) => a.slice(a.indexOf('.')).localeCompare(b.slice(b.indexOf('.'))))
      .map((f) => join(this.options.dir, f));
  }

  async shipped(file: string, keepLocal: boolean): Promise<void> {
    this.inS3.add(basename(file));
    await this.saveShipped();
    if (!keepLocal) await this.sweep();
  }

  /** Deletes what nothing needs any more; one sweep at a time. */
  sweep(): Promise<void> {
    this.running ??= this.deleteUnneeded().finally(() => (this.running = undefined));
    return this.running;
  }

  private closed(): string[] {
    const out: string[] = [];
    for (const files of listEventFiles(this.options.dir).values()) out.push(...files.slice(0, -1).map((f) => f.name));
    return out;
  }

  private async deleteUnneeded(): Promise<void> {
    const { hasBatchSinks, shipsEvents, keepLocal } = this.options;
    if (!hasBatchSinks && !shipsEvents) return;
    const files = listEventFiles(this.options.dir);
    let removed = 0;
    for (const [producer, list] of files) {
      for (const f of list.slice(0, -1)) {
        // Looked at again before each file: a replay started while an earlier
        // deletion was awaited reads from files this sweep would otherwise take.
        const read = this.options.positions().every((p) => p[producer] && compareFiles(p[producer].file, f.name) > 0);
        if (!read) break; // later files of the producer are not read either
        if (shipsEvents && (keepLocal || !this.inS3.has(f.name))) continue;
        try {
          await rm(join(this.options.dir, f.name));
          removed++;
        } catch (err) {
          if (errorCode(err) !== 'ENOENT') this.options.logger.error({ err, file: f.name }, 'events: could not delete a delivered event-log file');
        }
        this.inS3.delete(f.name);
      }
    }
    if (removed > 0) {
      this.options.logger.debug({ removed }, 'events: deleted event-log files every sink has');
      if (shipsEvents) await this.saveShipped();
    }
  }

  private async saveShipped(): Promise<void> {
    const present = new Set(this.closed());
    for (const f of this.inS3) if (!present.has(f)) this.inS3.delete(f);
    await writeFileDurably(this.shippedPath, `${JSON.stringify([...this.inS3].sort())}\n`);
  }
}

function readShipped(path: string): string[] {
  try {
    const list = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return Array.isArray(list) ? list.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    // Missing: nothing shipped yet. Damaged: shipping again is the safe side (S3 overwrites the same key).
    return [];
  }
}
