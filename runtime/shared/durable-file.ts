import { constants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { VolleyError } from './errors';

/**
 * open(2) flags for a file whose every write is durable when it returns.
 *
 * O_DSYNC makes one pwritev both the write and the fdatasync: one trip through
 * libuv's thread pool per group commit instead of two. On the 2-core bench the
 * thread-pool hand-offs (futex wake, eventfd, a promise) cost more main-thread
 * time than the sync itself.
 */
export function durableFlags(how: 'create' | 'existing' | 'append', durable: boolean): number {
  const { O_RDWR, O_CREAT, O_EXCL, O_APPEND, O_DSYNC } = constants;
  const base = how === 'create' ? O_RDWR | O_CREAT | O_EXCL : how === 'append' ? O_RDWR | O_CREAT | O_APPEND : O_RDWR;
  if (!durable) return base;
  // Linux has it; a platform without it must not quietly lose durability.
  if (O_DSYNC === undefined) throw new Error('O_DSYNC is not available on this platform: durable writes are impossible');
  return base | O_DSYNC;
}

/**
 * Writes all of `buffers` at `position`. A short write is how a filling disk
 * shows first: writing the rest turns it into the real error (ENOSPC, EDQUOT)
 * or completes it; a write that makes no progress is ENOSPC.
 */
export async function writeFully(fh: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let total = 0;
  for (const b of buffers) total += b.length;
  let written = (await fh.writev(buffers, position)).bytesWritten;
  if (written === total) return;
  const data = Buffer.concat(buffers);
  while (written < total) {
    const { bytesWritten } = await fh.write(data, written, total - written, position + written);
    if (bytesWritten === 0) throw new VolleyError('ENOSPC', `short write: ${written} of ${total} bytes`);
    written += bytesWritten;
  }
}
