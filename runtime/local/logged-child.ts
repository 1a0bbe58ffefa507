// One part of `volley local`: a child process whose stderr is appended to its
// own log file under the data folder.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';

/** Spawns `command args` with stdin and stdout ignored and stderr appended to `log`. */
export function spawnLogged(command: string, args: string[], log: string): ChildProcess {
  const proc = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  proc.stderr?.pipe(createWriteStream(log, { flags: 'a' }));
  return proc;
}
