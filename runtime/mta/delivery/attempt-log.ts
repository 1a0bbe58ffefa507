import { mkdirSync, readdirSync } from 'node:fs';
import { open, rename, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { durableFlags, writeFully } from '../../shared/durable-file';
import { GroupCommit } from '../../shared/group-commit';
import { errorCode } from '../../shared/errors';
import type { SpaceAccount } from '../spool/disk-reserve';

/** One delivery attempt, as one JSON line. Field names are stable: dashboards depend on them. */
export interface AttemptEvent {
  time: string;
  event: 'delivery';
  status: 'delivered' | 'deferred' | 'failed' | 'expired';
  message_id: string;
  injection_id?: string;
  attempt: number;
  sender: string;
  recipient: string;
  domain: string;
  vmta?: string;
  pool?: string;
  sending_ip?: string;
  helo?: string;
  via?: string;
  mx_host?: string;
  mx_ip?: string;
  smtp_code?: number;
  enhanced_code?: string;
  smtp_text?: string;
  error_kind?: string;
  bounce_category?: string;
  tls_version?: string;
  tls_cipher?: string;
  tls_verified?: boolean;
  time_in_queue_ms: number;
  connect_ms?: number;
  transaction_ms?: number;
  next_retry?: string;
  size: number;
  dkim_domain?: string;
  node?: string;
  metadata?: Record<string, string>;
}

export interface AttemptLogOptions {
  dir: string;
  /** Distinguishes the files of the workers of one node. */
  name: string;
  maxSize: number;
  maxAgeMs: number;
  fsync?: boolean;
  /**
   * How long events collect before one synced write (default 0: the next
   * turn of the event loop). Nobody's reply waits on this log, and each
   * synced write costs a thread-pool trip and a journal commit: at 2,000
   * deliveries a second, 10 ms makes one write of 20 events out of ten of
   * two. The price is that much more delay before an attempt's result is
   * recorded, and so that much more mail a crash would send again.
   */
  commitIntervalMs?: number;
  /**
   * The worker's spool reserve: a write that meets a full disk takes its room
   * from it (an attempt's events are written before its spool record, so a
   * finished delivery needs both).
   */
  reserve?: SpaceAccount;
}

/** One write() call's lines, waiting for the next group commit. */
interface PendingLines {
  line: string;
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * The delivery-attempt log: JSON lines under the persistent path, written with
 * group commit so an event is durable before the spool records the attempt's
 * result (at least once: a crash in between repeats the event, never loses it).
 * The open file is `<name>.current.jsonl`; a full or old one is renamed to
 * `<name>.<start time>.jsonl`, closed and ready to ship.
 */
export class AttemptLog {
  private fh?: FileHandle;
  private size = 0;
  private openedAt = 0;
  private readonly commit: GroupCommit<PendingLines>;

  constructor(private readonly options: AttemptLogOptions) {
    mkdirSync(options.dir, { recursive: true });
    this.commit = new GroupCommit((batch) => this.writeBatch(batch), { intervalMs: options.commitIntervalMs });
  }

  get currentPath(): string {
    return join(this.options.dir, `${this.options.name}.current.jsonl`);
  }

  /** Closed files, oldest first. */
  closedFiles(): string[] {
    const prefix = `${this.options.name}.`;
    return readdirSync(this.options.dir)
      .filter((f) => f.startsWith(prefix) && f.endsWith('.jsonl') && !f.endsWith('.current.jsonl'))
      .sort()
      .map((f) => join(this.options.dir, f));
  }

  write(events: AttemptEvent[]): Promise<void> {
    if (events.length === 0) return Promise.resolve();
    const line = events.map((e) => JSON.stringify(e)).join('\n') + '\n';
    return new Promise((resolve, reject) => {
      this.commit.add({ line, resolve, reject });
    });
  }

  async close(): Promise<void> {
    await this.commit.idle();
    await this.fh?.close();
    this.fh = undefined;
  }

  private async writeBatch(batch: PendingLines[]): Promise<void> {
    const data = Buffer.from(batch.map((p) => p.line).join(''));
    for (;;) {
      try {
        await this.ensureOpen();
        // Opened with O_DSYNC (unless fsync is off): the write returns durable.
        await writeFully(this.fh!, [data], this.size);
        this.size += data.length;
        this.options.reserve?.noteWritten(data.length);
        batch.forEach((p) => p.resolve());
        return;
      } catch (err) {
        // A write that failed part-way (a full disk) leaves part of a line: cut
        // it off, so the next batch starts a line and every line stays JSON.
        await this.fh?.truncate(this.size).catch(() => undefined);
        const full = errorCode(err) === 'ENOSPC' || errorCode(err) === 'EDQUOT';
        if (full && this.options.reserve && (await this.options.reserve.release(data.length).catch(() => false))) continue;
        // Its events are not lost: the attempt is not recorded, and the recorder holds it and tries again.
        batch.forEach((p) => p.reject(err as Error));
        return;
      }
    }
  }

  private async ensureOpen(): Promise<void> {
    const now = Date.now();
    if (this.fh && (this.size >= this.options.maxSize || (this.size > 0 && now - this.openedAt >= this.options.maxAgeMs))) {
      await this.fh.close();
      this.fh = undefined;
      const stamp = new Date(this.openedAt).toISOString().replace(/[:.]/g, '-');
      await rename(this.currentPath, join(this.options.dir, `${this.options.name}.${stamp}.jsonl`));
    }
    if (!this.fh) {
      this.fh = await open(this.currentPath, durableFlags('append', this.options.fsync !== false));
      const { size } = await this.fh.stat();
      this.size = await completeLinesEnd(this.fh, size);
      if (this.size < size) await this.fh.truncate(this.size);
      this.openedAt = now;
    }
  }
}

/**
 * Where the file's last complete line ends. A crash in the middle of a write
 * leaves part of a line at the end; appending after it would put a broken
 * line in the middle of the file, which a shipper reading JSON lines would
 * stop at. That tail was never acknowledged (the attempt was not recorded,
 * so it is tried and logged again), and is cut off.
 */
async function completeLinesEnd(fh: FileHandle, size: number): Promise<number> {
  const chunk = Buffer.allocUnsafe(64 * 1024);
  for (let end = size; end > 0; ) {
    const start = Math.max(0, end - chunk.length);
    const { bytesRead } = await fh.read(chunk, 0, end - start, start);
    const nl = chunk.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (nl >= 0) return start + nl + 1;
    end = start;
  }
  return 0;
}
