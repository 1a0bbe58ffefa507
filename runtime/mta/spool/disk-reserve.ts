// The spool volume's free space, and a preallocated reserve file that only
// delivery records (the spool's state/done records, the attempt log) may use:
// intake stops at `spool.min_free`, and a finished delivery can still record
// its outcome when something else has filled the disk to the last block.
import { constants } from 'node:fs';
import { open, statfs as fsStatfs, type FileHandle } from 'node:fs/promises';
import type { Logger } from 'pino';
import { VolleyError, errorCode } from '../../shared/errors';

/** Free space below which intake refuses: bytes, or a percentage of the filesystem. */
export type MinFree = { bytes: number } | { percent: number };

export interface DiskSpace {
  bsize: number;
  blocks: number;
  bavail: number;
}

export interface DiskReserveOptions {
  /** The reserve file; it lives on the volume it reserves space on. */
  file: string;
  /** Bytes the reserve file holds when there is room for it. */
  bytes: number;
  minFree: MinFree;
  /** How often free space is read with statfs (default 1 s). */
  checkIntervalMs?: number;
  logger?: Logger;
  /** statfs(2) of the volume (tests pass their own). */
  statfs?: (path: string) => Promise<DiskSpace>;
}

/** What the writers of records need of a reserve: room on ENOSPC, and their bytes counted. */
export interface SpaceAccount {
  /** Frees at least `bytes` (or all that is left) of the reserve; false when nothing is left. */
  release(bytes: number): Promise<boolean>;
  noteWritten(bytes: number): void;
}

const CHUNK = 1024 * 1024;
const RECORDABLE = 64 * 1024;
const ZEROS = Buffer.alloc(CHUNK);

/**
 * Why a reserve file and not only a threshold: on a shared filesystem a
 * threshold reserves nothing. Another worker, the attempt log or a file an
 * operator copies there can take the last block, and then a done record cannot
 * be written and the message it ends is sent again. Blocks held by a file of
 * ours are given back only when our records need them (ftruncate frees them at
 * once), so they are there whatever else filled the disk.
 *
 * Why the hot path costs nothing: intake asks `intakeOpen`, a comparison of
 * two numbers. The free space is read by statfs once a second (a timer, off
 * the hot path) and in between lowered by the bytes this worker writes, so its
 * own writes never overshoot the threshold by more than one group commit;
 * other workers' writes are seen at the next statfs. Segments deleted by
 * reclamation are seen there too, which is how intake resumes by itself.
 */
export class DiskReserve implements SpaceAccount {
  private fh?: FileHandle;
  /** Bytes the reserve file holds now. */
  private size = 0;
  /** Free space outside the reserve as last read, less what was written since. */
  private free = Infinity;
  private minFreeBytes = 0;
  private timer?: NodeJS.Timeout;
  private checking?: Promise<void>;
  private wasOpen = true;
  /** Resolves once the reserve file was first filled (as far as the disk had room). */
  ready: Promise<void> = Promise.resolve();
  private readonly statfs: (path: string) => Promise<DiskSpace>;

  private constructor(private readonly options: DiskReserveOptions) {
    this.statfs = options.statfs ?? ((p) => fsStatfs(p));
  }

  /**
   * Opens (creating) the reserve file and reads the free space. The file is
   * filled to its size right after, in the background: writing tens of MB
   * must not hold up a start (the first check's promise is `ready`).
   */
  static async open(options: DiskReserveOptions): Promise<DiskReserve> {
    const r = new DiskReserve(options);
    try {
      r.fh = await open(options.file, constants.O_RDWR | constants.O_CREAT);
      r.size = (await r.fh.stat()).size;
      if (r.size > options.bytes) {
        await r.fh.truncate(options.bytes);
        r.size = options.bytes;
      }
    } catch (err) {
      // A start on a disk so full that not even the file can be made must
      // still start (and deliver, which frees space): min_free holds without it.
      options.logger?.error({ err, file: options.file }, 'spool: the reserve file cannot be opened; running without it');
      await r.fh?.close().catch(() => undefined);
      r.fh = undefined;
      r.size = 0;
    }
    await r.readSpace(false);
    r.ready = r.check().catch((err) => options.logger?.error({ err }, 'spool: filling the reserve file failed'));
    r.timer = setInterval(() => void r.check().catch((err) => options.logger?.error({ err }, 'spool: reading free space failed')), options.checkIntervalMs ?? 1000);
    r.timer.unref();
    return r;
  }

  /** Intake may store a message: the free space outside the reserve is at least `spool.min_free`. */
  get intakeOpen(): boolean {
    return this.free >= this.minFreeBytes;
  }

  /** Bytes left in the reserve file. */
  get reserved(): number {
    return this.size;
  }

  /**
   * An outcome can be recorded: the reserve has room left, or the disk has
   * room for a batch of records (~100 outcomes). Set low on purpose: below it
   * deliveries wait for space, and only finished deliveries free space.
   */
  get recordable(): boolean {
    return this.size > 0 || this.free >= RECORDABLE;
  }

  /** The error intake answers with while it refuses. */
  refusal(): VolleyError {
    return new VolleyError('ENOSPC', `free space on the spool volume is below spool.min_free (${this.minFreeBytes} bytes)`);
  }

  noteWritten(bytes: number): void {
    this.free -= bytes;
  }

  release(bytes: number): Promise<boolean> {
    return this.serial(async () => {
      if (this.size === 0 || !this.fh) return false;
      const n = Math.min(this.size, Math.max(bytes, CHUNK));
      await this.fh.truncate(this.size - n);
      this.size -= n;
      this.options.logger?.warn({ released: n, left: this.size }, 'spool: disk full; reserve space released for delivery records');
      return true;
    });
  }

  /** One change of the reserve file at a time: a release and a regrowth must not interleave. */
  private queue: Promise<unknown> = Promise.resolve();
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Reads the free space; grows the reserve back first when there is room beyond `min_free`. */
  check(): Promise<void> {
    this.checking ??= this.readSpace(true).finally(() => (this.checking = undefined));
    return this.checking;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.ready;
    await this.checking?.catch(() => undefined);
    await this.fh?.close();
    this.fh = undefined;
  }

  private async readSpace(grow: boolean): Promise<void> {
    let s = await this.statfs(this.options.file);
    const total = s.blocks * s.bsize;
    const min = this.options.minFree;
    this.minFreeBytes = 'bytes' in min ? min.bytes : Math.ceil((total * min.percent) / 100);
    let free = s.bavail * s.bsize;
    const room = Math.min(this.options.bytes - this.size, free - this.minFreeBytes);
    if (grow && room > 0 && this.fh) {
      await this.serial(() => this.grow(room));
      s = await this.statfs(this.options.file);
      free = s.bavail * s.bsize;
    }
    this.free = free;
    const open = this.intakeOpen;
    if (open !== this.wasOpen) {
      if (open) this.options.logger?.info({ free, minFree: this.minFreeBytes }, 'spool: free space above spool.min_free again; intake resumes');
      else this.options.logger?.error({ free, minFree: this.minFreeBytes }, 'spool: free space below spool.min_free; intake refused until space is freed');
    }
    this.wasOpen = open;
  }

  /** Writes zeros (allocated blocks, not a sparse hole) up to `bytes` more; stops quietly at a full disk. */
  private async grow(bytes: number): Promise<void> {
    const fh = this.fh;
    if (!fh) return;
    const target = Math.min(this.options.bytes, this.size + bytes);
    try {
      while (this.size < target) {
        const n = Math.min(CHUNK, target - this.size);
        const { bytesWritten } = await fh.write(ZEROS, 0, n, this.size);
        if (bytesWritten === 0) break;
        this.size += bytesWritten;
      }
      await fh.sync();
    } catch (err) {
      if (errorCode(err) !== 'ENOSPC' && errorCode(err) !== 'EDQUOT') throw err;
      this.size = (await fh.stat()).size;
    }
  }
}
