// A send to a worker that died, before its exit is read, emits 'error'
// (ERR_IPC_CHANNEL_CLOSED) on it; with no listener that throws in the primary
// and takes the node down (seen as a CI failure: the lb's /status polled
// while a worker was killed answered "other side closed"). keepIpcErrors
// turns it into a log line. A real child process, killed -9.
import { execFile, fork } from 'node:child_process';
import { join } from 'node:path';
import { keepIpcErrors } from '../../../runtime/shared/worker-ipc';
import { waitUntil } from '../../helpers/proxy-fixtures';

test('a send to a worker killed -9 is logged, not thrown', async () => {
  const child = fork('-e', ['setInterval(() => {}, 1000)'], { execArgv: [] });
  const errors: string[] = [];
  keepIpcErrors(child, (err) => errors.push((err as NodeJS.ErrnoException).code ?? err.message));
  try {
    await new Promise<void>((resolve) => child.once('spawn', () => resolve()));
    child.kill('SIGKILL');
    await waitUntil(() => !child.connected);
    child.send({ type: 'status' });
    await waitUntil(() => errors.length === 1);
    expect(errors).toEqual(['ERR_IPC_CHANNEL_CLOSED']);
  } finally {
    child.kill('SIGKILL');
  }
});

test('a fork whose spawn fails (EMFILE) is read as an exit, so the primary forks it again', async () => {
  // Node emits only 'error' for it, never 'exit': the primaries' exit handlers, which fork a dead worker again, never ran.
  const script = join(__dirname, '../../helpers/fork-emfile-child.ts');
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile('prlimit', ['--nofile=256:256', process.execPath, '--import', 'tsx', script], (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
  expect({ code: r.code, stdout: r.stdout.trim(), stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stdout: JSON.stringify(['error EMFILE', 'exit', 'online', 'exit']), stderr: '' });
});
