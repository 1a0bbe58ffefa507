// The file arbiter: the lease as numbered generations beside the configured
// path (`lease.json.1`, `lease.json.2`, …; the highest is the lease). A
// write is a compare-and-swap without locks: the new content goes to a
// private temporary file, is fsynced, and is hard-linked to the next
// generation's name, which link(2) refuses if it exists, so of two writers
// that read the same generation exactly one wins. No lock file can be left
// behind by a crash. Old generations are removed, keeping the last few.
// The version (etag) is the generation and the sha256 of its content.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { link, readdir, readFile, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { VolleyError, errorCode } from '../shared/errors';
import { fsyncDir } from './state';
import { leaseConflict, parseLease, serializeLease, type Arbiter, type Lease, type LeaseRead } from './arbiter';

/** Generations kept below the current one (a reader that listed just before a write still finds its file). */
const KEEP = 8;

export class FileArbiter implements Arbiter {
  readonly where: string;
  private readonly dir: string;
  private readonly base: string;

  constructor(path: string) {
    this.where = path;
    this.dir = dirname(path);
    this.base = basename(path);
  }

  private name(gen: number): string {
    return join(this.dir, `${this.base}.${gen}`);
  }

  /** Generations present, highest first. */
  private async generations(): Promise<number[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      throw new VolleyError('EARBITER', `cannot read the arbiter's folder ${this.dir}: ${(err as Error).message}`);
    }
    const prefix = `${this.base}.`;
    return names
      .filter((n) => n.startsWith(prefix) && /^[0-9]+$/.test(n.slice(prefix.length)))
      .map((n) => Number(n.slice(prefix.length)))
      .sort((a, b) => b - a);
  }

  async read(): Promise<LeaseRead> {
    for (let tries = 0; ; tries++) {
      const [gen] = await this.generations();
      if (gen === undefined) return {};
      let text: string;
      try {
        text = await readFile(this.name(gen), 'utf8');
      } catch (err) {
        // Removed between the listing and the read (a newer one exists): list again.
        if (errorCode(err) === 'ENOENT' && tries < 5) continue;
        throw new VolleyError('EARBITER', `cannot read the lease ${this.name(gen)}: ${(err as Error).message}`);
      }
      return { lease: parseLease(text, this.name(gen)), etag: etag(gen, text) };
    }
  }

  async write(lease: Lease, ifMatch: string | undefined): Promise<string> {
    const gens = await this.generations();
    const current = gens[0];
    let next: number;
    if (ifMatch === undefined) {
      if (current !== undefined) throw leaseConflict(this.where);
      next = 1;
    } else {
      const want = /^([0-9]+)-/.exec(ifMatch);
      if (!want || current === undefined || Number(want[1]) !== current) throw leaseConflict(this.where);
      const text = await readFile(this.name(current), 'utf8').catch(() => undefined);
      if (text === undefined || etag(current, text) !== ifMatch) throw leaseConflict(this.where);
      next = current + 1;
    }
    const text = serializeLease(lease);
    const tmp = join(this.dir, `.${this.base}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      const fd = openSync(tmp, 'wx', 0o644);
      try {
        writeSync(fd, text);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      try {
        await link(tmp, this.name(next));
      } catch (err) {
        if (errorCode(err) === 'EEXIST') throw leaseConflict(this.where);
        throw err;
      }
    } catch (err) {
      if (errorCode(err) === 'ELEASECONFLICT') throw err;
      throw new VolleyError('EARBITER', `cannot write the lease at ${this.name(next)}: ${(err as Error).message}`);
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    fsyncDir(this.dir);
    // Cleanup may have removed generation `next` long ago while we were slow: then ours is not the highest and never was the lease.
    const after = await this.generations();
    if (after[0] !== next) {
      await unlink(this.name(next)).catch(() => undefined);
      throw leaseConflict(this.where);
    }
    for (const g of after.slice(KEEP + 1)) await unlink(this.name(g)).catch(() => undefined);
    return etag(next, text);
  }
}

function etag(gen: number, text: string): string {
  return `${gen}-${createHash('sha256').update(text).digest('hex').slice(0, 32)}`;
}
