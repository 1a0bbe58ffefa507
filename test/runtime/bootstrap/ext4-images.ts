// What a slot volume can hold before a boot, made with the real mkfs.ext4 on a
// file or loop device: a first format interrupted part-way (strace kills mkfs
// at its Nth write, as an instance gone mid-format would), and an ext4 whose
// primary superblock lost its magic (a torn write).
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';

/** The primary superblock's magic (0xEF53): 1024 bytes in, 0x38 into the superblock. */
export const PRIMARY_MAGIC_AT = 1080;

/**
 * Runs `mkfs.ext4` as the bootstrap does and kills it (SIGKILL, from strace)
 * at its `atWrite`th pwrite: mke2fs has written group descriptors and tables
 * into the first MiB by then, and no superblock (they are its last writes).
 */
export function interruptedMkfs(target: string, atWrite = 200): void {
  const run = spawnSync('strace', ['-qq', '-f', '-o', '/dev/null', '-e', 'trace=pwrite64', '-e', `inject=pwrite64:signal=KILL:when=${atWrite}`, 'mkfs.ext4', '-q', '-m', '0', '-L', 'volley', target], { stdio: 'ignore' });
  // strace dies of the signal it injected: anything else means mkfs was not interrupted.
  if (run.signal !== 'SIGKILL' && run.status !== 137) throw new Error(`mkfs.ext4 under strace was not killed (status ${run.status}, signal ${run.signal}, ${run.error?.message ?? 'no error'})`);
}

/** Overwrites the primary superblock's magic with zeros and returns what was there, to put back. */
export function wipePrimaryMagic(target: string): Buffer {
  const fd = openSync(target, 'r+');
  const magic = Buffer.alloc(2);
  try {
    readSync(fd, magic, 0, 2, PRIMARY_MAGIC_AT);
    writeSync(fd, Buffer.alloc(2), 0, 2, PRIMARY_MAGIC_AT);
  } finally {
    closeSync(fd);
  }
  return magic;
}

/** Writes the magic wipePrimaryMagic took back. */
export function restorePrimaryMagic(target: string, magic: Buffer): void {
  const fd = openSync(target, 'r+');
  try {
    writeSync(fd, magic, 0, 2, PRIMARY_MAGIC_AT);
  } finally {
    closeSync(fd);
  }
}

/** Whether the first `bytes` of the target hold anything but zeros (what blank-by-zeros looks at). */
export function leadingDataIn(target: string, bytes: number): boolean {
  const fd = openSync(target, 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    const read = readSync(fd, buffer, 0, bytes, 0);
    return buffer.subarray(0, read).some((byte) => byte !== 0);
  } finally {
    closeSync(fd);
  }
}
