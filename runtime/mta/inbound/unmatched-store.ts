// inbound/unmatched/: the mail the report listener took responsibility for
// but could not turn into events (not a report, unreadable, forged, not
// ours). Kept whole for an operator to look at, bounded in bytes: the oldest
// files go first, each with a log line, so nothing leaves silently.

import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { inboundMetrics } from './inbound-metrics';

export class UnmatchedStore {
  /** Oldest first (names start with the time, so name order is age order). */
  private files: { name: string; size: number }[] = [];
  private total = 0;
  private ready?: Promise<void>;

  constructor(
    readonly dir: string,
    private readonly maxBytes: number,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Creates the folder and counts what an earlier run left in it. */
  init(): Promise<void> {
    this.ready ??= (async () => {
      await mkdir(this.dir, { recursive: true });
      const names = (await readdir(this.dir)).filter((n) => n.endsWith('.eml')).sort();
      this.files = await Promise.all(names.map(async (name) => ({ name, size: (await stat(join(this.dir, name))).size })));
      this.total = this.files.reduce((n, f) => n + f.size, 0);
    })();
    return this.ready;
  }

  /** Writes the message durably (the caller answers 250 after), then trims the oldest past the bound. Returns the file name. */
  async store(raw: Buffer): Promise<string> {
    await this.init();
    const time = new Date(this.now()).toISOString().replace(/[-:.]/g, '');
    const name = `${time}-${randomBytes(6).toString('hex')}.eml`;
    const tmp = join(this.dir, `.${name}.tmp`);
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(raw);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(this.dir, name));
    await syncDir(this.dir);
    this.files.push({ name, size: raw.length });
    this.total += raw.length;
    await this.trim();
    return name;
  }

  get bytes(): number {
    return this.total;
  }

  private async trim(): Promise<void> {
    while (this.total > this.maxBytes && this.files.length > 0) {
      const oldest = this.files.shift()!;
      this.total -= oldest.size;
      try {
        await unlink(join(this.dir, oldest.name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.logger.warn({ err, file: oldest.name }, 'inbound: could not remove an unmatched file');
      }
      inboundMetrics.unmatchedRemoved.inc();
      this.logger.warn({ file: oldest.name, size: oldest.size, kept_bytes: this.total, unmatched_max: this.maxBytes }, 'inbound: unmatched/ is over inbound.unmatched_max: removed its oldest file');
    }
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
