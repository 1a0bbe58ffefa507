// A send to a worker that died, before its exit is read, emits 'error'
// (ERR_IPC_CHANNEL_CLOSED) on it; with no listener that throws in the primary
// and takes the node down (seen as a CI failure: the lb's /status polled
// while a worker was killed answered "other side closed"). keepIpcErrors
// turns it into a log line. A real child process, killed -9.
import { fork } from 'node:child_process';
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
