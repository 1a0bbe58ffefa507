// The tmpfs clean-up the disk-full tests rely on: nothing stays mounted after a failed run.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { isMounted, mountTmpfs } from './tmpfs';

test('a stop that throws does not keep the tmpfs mounted: every stop runs, it unmounts, and the error still shows', async () => {
  const fs = mountTmpfs('volley-tmpfs-test-', '1m');
  expect(isMounted(fs.mnt)).toBe(true);
  const ran: string[] = [];
  await expect(
    fs.release(
      () => {
        ran.push('mta');
        throw new Error('the MTA did not stop');
      },
      async () => void ran.push('sink'),
    ),
  ).rejects.toThrow('the MTA did not stop');
  expect(ran).toEqual(['mta', 'sink']);
  expect(isMounted(fs.mnt)).toBe(false);
  expect(existsSync(fs.dir)).toBe(false);
});

test('a process still working in the tmpfs does not keep it mounted (lazy unmount)', async () => {
  const fs = mountTmpfs('volley-tmpfs-test-', '1m');
  // A process whose working directory is the mount: a plain umount fails with "target is busy".
  const holder = spawn('sleep', ['600'], { cwd: fs.mnt, stdio: 'ignore' });
  const gone = new Promise((r) => holder.once('exit', r));
  try {
    await new Promise((r) => holder.once('spawn', r));
    await fs.release();
    expect(isMounted(fs.mnt)).toBe(false);
  } finally {
    if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL'); // our own child, by its handle
    await gone;
  }
});
