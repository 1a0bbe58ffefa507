// The spool's free-space threshold and reserve file: intake closes below
// spool.min_free (own writes counted between statfs reads) and opens again by
// itself; the reserve file is filled, released to records, and refilled.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { DiskReserve, type DiskSpace } from '../../../../runtime/mta/spool/disk-reserve';
import { tempDir } from '../../../helpers/tmp';

const root = tempDir();
const MB = 1024 * 1024;

/** A volume of 100 MB whose free space the test sets; the reserve file's own growth is subtracted. */
function volume(freeMb: number, file: string): { set: (bytes: number) => void; statfs: (p: string) => Promise<DiskSpace> } {
  const space = { free: freeMb * MB };
  let counted = 0;
  return {
    // The free space as it is now, the reserve file as it is now included.
    set: (bytes) => {
      space.free = bytes;
      counted = statSync(file).size;
    },
    statfs: async (p: string) => {
      // What the reserve file took since the last read comes off the free space, as on a real disk.
      const size = statSync(p).size;
      space.free -= size - counted;
      counted = size;
      return { bsize: 4096, blocks: (100 * MB) / 4096, bavail: Math.max(0, Math.floor(space.free / 4096)) };
    },
  };
}

test('intake closes below min_free, counting its own writes between reads, and opens by itself when space returns', async () => {
  const v = volume(20, join(root, 'r1'));
  const r = await DiskReserve.open({ file: join(root, 'r1'), bytes: 2 * MB, minFree: { percent: 10 }, statfs: v.statfs, checkIntervalMs: 3_600_000 });
  try {
    await r.ready;
    expect(r.reserved).toBe(2 * MB);
    expect(r.intakeOpen).toBe(true); // 18 MB free, 10 MB needed
    r.noteWritten(7 * MB);
    expect(r.intakeOpen).toBe(true);
    r.noteWritten(2 * MB); // 9 MB left by its own count, before any statfs
    expect(r.intakeOpen).toBe(false);
    expect(r.refusal()).toMatchObject({ code: 'ENOSPC' });
    v.set(12 * MB); // segments deleted: the next read sees it
    await r.check();
    expect(r.intakeOpen).toBe(true);
  } finally {
    await r.close();
  }
});

test('the reserve is released to records on a full disk, and refilled only once free space is back above min_free', async () => {
  const file = join(root, 'r2');
  const v = volume(20, file);
  const r = await DiskReserve.open({ file, bytes: 3 * MB, minFree: { bytes: 5 * MB }, statfs: v.statfs, checkIntervalMs: 3_600_000 });
  try {
    await r.ready;
    expect(statSync(file).size).toBe(3 * MB);
    expect(await r.release(100)).toBe(true); // at least a chunk at a time
    expect(statSync(file).size).toBe(2 * MB);
    expect(await r.release(5 * MB)).toBe(true); // all that is left
    expect(r.reserved).toBe(0);
    expect(await r.release(100)).toBe(false);
    v.set(5 * MB + MB / 2); // only half a MB above min_free: that much comes back, intake stays at the line
    await r.check();
    expect(r.reserved).toBe(MB / 2);
    expect(r.intakeOpen).toBe(true);
    v.set(15 * MB);
    await r.check();
    expect(r.reserved).toBe(3 * MB);
    expect(r.recordable).toBe(true);
  } finally {
    await r.close();
  }
});

test('a reserve file larger than configured is cut to size at start', async () => {
  const file = join(root, 'r3');
  const v = volume(50, file);
  const big = await DiskReserve.open({ file, bytes: 4 * MB, minFree: { bytes: 0 }, statfs: v.statfs, checkIntervalMs: 3_600_000 });
  await big.ready;
  await big.close();
  const small = await DiskReserve.open({ file, bytes: MB, minFree: { bytes: 0 }, statfs: v.statfs, checkIntervalMs: 3_600_000 });
  await small.close();
  expect(statSync(file).size).toBe(MB);
});

test('a reserve file that cannot be made (a disk too full for a new file) does not stop the start: min_free still holds', async () => {
  const statfs = async (): Promise<DiskSpace> => ({ bsize: 4096, blocks: 1000, bavail: 10 });
  const r = await DiskReserve.open({ file: join(root, 'missing-dir', 'r4'), bytes: MB, minFree: { bytes: 64 * 1024 }, statfs, checkIntervalMs: 3_600_000 });
  try {
    await r.ready;
    expect(r.reserved).toBe(0);
    expect(r.intakeOpen).toBe(false); // 40 KB free, 64 KB wanted
    expect(await r.release(100)).toBe(false);
  } finally {
    await r.close();
  }
});
