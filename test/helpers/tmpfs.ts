// A small real filesystem (tmpfs) for tests where the disk must really fill,
// and its clean-up. The clean-up must unmount even when the test failed half
// way: a stop that throws, or a process still holding a file, used to leave
// the tmpfs mounted on the machine. Mounting needs root (the pretest checks).
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Tmpfs {
  /** The fresh directory holding the mount point (for things that must not fill, e.g. a sink's dumps). */
  dir: string;
  /** The mount point. */
  mnt: string;
  /**
   * Runs each stop in turn (each inside its own try: one that throws does not
   * skip the rest), then unmounts lazily (`umount -l`: a process nobody
   * could stop keeps its files but the mount leaves the tree) and removes
   * the directory. Rethrows the first stop's error afterwards.
   */
  release(...stops: (() => unknown)[]): Promise<void>;
}

export function mountTmpfs(prefix: string, size: string): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt]);
  return {
    dir,
    mnt,
    async release(...stops) {
      const errors: unknown[] = [];
      for (const stop of stops) {
        try {
          await stop();
        } catch (err) {
          errors.push(err);
        }
      }
      try {
        if (isMounted(mnt)) execFileSync('umount', ['-l', mnt]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      if (errors.length > 0) throw errors[0];
    },
  };
}

/** Whether `path` is a mount point, from /proc/self/mounts (octal escapes as the kernel writes them). */
export function isMounted(path: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[1]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) === path);
}

/** Takes every free block of the volume `file` is on (remove `file` to give them back). */
export function fillVolume(file: string): void {
  const fd = openSync(file, 'w');
  try {
    for (;;) writeSync(fd, Buffer.alloc(4096, 1));
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}
