// Finds an ext4 backup superblock on a device whose primary one blkid cannot
// see: the evidence that a volume holds a filesystem to repair (e2fsck -b),
// not the leftovers of a first mkfs that never finished.
import { open } from 'node:fs/promises';
import { BootstrapError } from './errors';

/** Where a backup superblock was found: what `e2fsck -b <block> -B <blockSize>` needs. */
export interface Ext4Backup {
  readonly block: number;
  readonly blockSize: number;
}

const EXT4_MAGIC = 0xef53;
/** Offsets inside a superblock: s_log_block_size (block size = 1024 << it) and s_magic. */
const LOG_BLOCK_SIZE_AT = 0x18;
const MAGIC_AT = 0x38;
/**
 * The groups that hold a backup with sparse_super (mke2fs's default): 1 and
 * the powers of 3, 5 and 7. A few of them, so one damaged backup is not
 * taken for none.
 */
const BACKUP_GROUPS = [1, 3, 5, 7, 9] as const;
/** Block sizes ext4 can have; mke2fs makes 1 KiB blocks on small volumes and 4 KiB on the rest. */
const BLOCK_SIZES = [1024, 2048, 4096, 8192, 16384, 32768, 65536] as const;

/**
 * The block of the first backup superblock found, if any. A group holds
 * 8 * blockSize blocks (mke2fs's default) and, with 1 KiB blocks, block 0
 * is the boot block, so groups start one block later. A backup sits at its
 * group's first block, its magic 0x38 bytes in; the block size it records
 * must be the one we guessed. mke2fs writes the backups and the primary last:
 * a format that was interrupted leaves none.
 */
export async function findExt4Backup(device: string): Promise<Ext4Backup | undefined> {
  let handle;
  try {
    handle = await open(device, 'r');
    const superblock = Buffer.alloc(1024);
    for (const blockSize of BLOCK_SIZES) {
      const firstDataBlock = blockSize === 1024 ? 1 : 0;
      for (const group of BACKUP_GROUPS) {
        const block = group * 8 * blockSize + firstDataBlock;
        const { bytesRead } = await handle.read(superblock, 0, superblock.length, block * blockSize);
        if (bytesRead < superblock.length) break; // past the device's end: no later group either
        const log = superblock.readUInt32LE(LOG_BLOCK_SIZE_AT);
        if (superblock.readUInt16LE(MAGIC_AT) === EXT4_MAGIC && log <= 6 && 1024 << log === blockSize) return { block, blockSize };
      }
    }
    return undefined;
  } catch (err) {
    throw new BootstrapError('EFILESYSTEM', `cannot read ${device} to look for an ext4 backup superblock: ${(err as Error).message}`);
  } finally {
    await handle?.close();
  }
}
