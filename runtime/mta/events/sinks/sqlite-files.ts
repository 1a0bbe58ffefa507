// The files of one SQLite sink's directory: how they are named, how a closed
// one is made durable under its final name, and the S3 shipper's view of them.
//
//   <name>.<stamp>.open.sqlite     being written (at most one; a crash may leave it)
//   <name>.<stamp>.sqlite          closed, complete, never written again: the only
//                                  pattern a sidecar or the shipper picks up
//   <name>.<stamp>.broken.sqlite   an open file SQLite could not open after a crash:
//                                  kept for a human, never shipped
//   shipped/<name>.<stamp>.sqlite  shipped to S3 and kept (s3 keep_local)
//
// <stamp> is the UTC time the file was started, 20261205T034319123Z, with a
// -<n> suffix when two files would start in the same millisecond.

import { closeSync, existsSync, fsyncSync, openSync, readdirSync, constants } from 'node:fs';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { VolleyError, errorCode } from '../../../shared/errors';
import type { ShipSource } from '../types';

export const SHIPPED_DIR = 'shipped';

export interface SinkFile {
  path: string;
  stamp: string;
  /** When the file was started (ms since the epoch), from its stamp. */
  startedMs: number;
}

export function formatStamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:.]/g, '');
}

function stampMs(stamp: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z/.exec(stamp);
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6], +m[7]) : NaN;
}

export function openPath(dir: string, name: string, stamp: string): string {
  return join(dir, `${name}.${stamp}.open.sqlite`);
}

export function finalPath(dir: string, name: string, stamp: string): string {
  return join(dir, `${name}.${stamp}.sqlite`);
}

export function brokenPath(dir: string, name: string, stamp: string): string {
  return join(dir, `${name}.${stamp}.broken.sqlite`);
}

function pattern(name: string, suffix: string): RegExp {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${escaped}\\.(\\d{8}T\\d{9}Z(?:-\\d+)?)${suffix.replace(/\./g, '\\.')}$`);
}

/** Oldest first: by start time, then by the same-millisecond suffix. */
function byStamp(a: SinkFile, b: SinkFile): number {
  return a.startedMs - b.startedMs || suffixOf(a.stamp) - suffixOf(b.stamp);
}

function suffixOf(stamp: string): number {
  const dash = stamp.indexOf('-');
  return dash < 0 ? 0 : Number(stamp.slice(dash + 1));
}

function list(dir: string, re: RegExp): SinkFile[] {
  const files: SinkFile[] = [];
  for (const entry of readdirSync(dir)) {
    const m = re.exec(entry);
    if (m) files.push({ path: join(dir, entry), stamp: m[1], startedMs: stampMs(m[1]) });
  }
  return files.sort(byStamp);
}

export function openFiles(dir: string, name: string): SinkFile[] {
  return list(dir, pattern(name, '.open.sqlite'));
}

export function closedFiles(dir: string, name: string): SinkFile[] {
  return list(dir, pattern(name, '.sqlite'));
}

/** A stamp for a file started at `ms` that no file in `dir` uses yet, in any state. */
export function freshStamp(dir: string, name: string, ms: number): string {
  // A file kept after shipping (shipped/) still owns its name: S3 has a file by it.
  const taken = new Set([...readdirSync(dir), ...(existsSync(join(dir, SHIPPED_DIR)) ? readdirSync(join(dir, SHIPPED_DIR)) : [])]);
  const base = formatStamp(ms);
  for (let n = 0; ; n++) {
    const stamp = n === 0 ? base : `${base}-${n}`;
    const names = [openPath, finalPath, brokenPath].map((f) => basename(f(dir, name, stamp)));
    if (!names.some((x) => taken.has(x))) return stamp;
  }
}

/** fsync(2) a file or a directory by path: what a rename or a create needs to survive power loss. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * The shipper's view: closed files, oldest first, and what happens once S3
 * holds one. A shipped file is deleted, or with keep_local moved into
 * `shipped/`, which closedFiles() does not list, so it is never shipped twice
 * (the move is fsynced before shipped() resolves).
 */
export function sqliteShipSource(dir: string, name: string): ShipSource {
  const finalRe = pattern(name, '.sqlite');
  return {
    kind: 'sqlite',
    async closedFiles() {
      return closedFiles(dir, name).map((f) => f.path);
    },
    async shipped(file: string, keepLocal: boolean) {
      const path = resolve(file);
      if (dirname(path) !== resolve(dir) || !finalRe.test(basename(path))) {
        throw new VolleyError('SQLITE_SHIP_UNKNOWN_FILE', `${file} is not a closed file of SQLite sink "${name}" (${dir})`);
      }
      try {
        if (keepLocal) {
          const shippedDir = join(dir, SHIPPED_DIR);
          await mkdir(shippedDir, { recursive: true });
          await rename(path, join(shippedDir, basename(path)));
          await fsyncDir(shippedDir);
        } else {
          await unlink(path);
        }
      } catch (err) {
        // Already gone: a shipped() repeated after a crash between the
        // removal and the shipper's own record. Nothing left to do.
        if (errorCode(err) !== 'ENOENT') throw err;
      }
      await fsyncDir(dir);
    },
  };
}
