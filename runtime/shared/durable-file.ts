import { constants } from 'node:fs';

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
