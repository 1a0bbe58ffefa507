// A child process for keepIpcErrors's spawn-failure test: a cluster primary
// that takes every file descriptor it may open (run it under `prlimit
// --nofile=N`), forks one worker (whose spawn then fails: EMFILE), gives the
// descriptors back, and forks again on the worker's 'exit', as the daemons'
// primaries do. Prints one JSON line of what it saw. Run with `node --import tsx`.
import cluster from 'node:cluster';
import { closeSync } from 'node:fs';
import { takeEveryDescriptor } from './descriptors';
import { keepIpcErrors } from '../../runtime/shared/worker-ipc';

if (cluster.isPrimary) {
  const seen: string[] = [];
  const held = takeEveryDescriptor();
  const fork = (): void => {
    const w = cluster.fork();
    keepIpcErrors(w, (err) => seen.push(`error ${(err as NodeJS.ErrnoException).code}`));
    w.on('online', () => {
      seen.push('online');
      w.kill();
    });
    w.on('exit', () => {
      seen.push('exit');
      if (seen.includes('online')) {
        process.stdout.write(`${JSON.stringify(seen)}\n`);
        return;
      }
      // The restart, once the descriptors are back.
      for (const fd of held.splice(0)) closeSync(fd);
      fork();
    });
  };
  fork();
} else {
  setInterval(() => undefined, 1000);
}
