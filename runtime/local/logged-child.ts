// One part of `volley local`: a child process whose stderr is appended to its
// own log file under the data folder.
//
// The log is opened here, synchronously, and handed to the child as its
// stderr: no stream in this process that could emit an 'error' no one hears
// (a log folder not writable, a directory in the log's place, a full disk
// while writing all took `volley local` down, the sink MX with it), and
// nothing the child wrote is buffered here, so nothing is lost if the log
// fails. A log that cannot be opened is reported and the child writes to our
// own stderr instead.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

/**
 * Spawns `command args` with stdin and stdout ignored and stderr appended to
 * `log`. `problem` hears, as one line each, a log that cannot be opened and a
 * command that cannot start (the child then emits no 'exit', only 'close').
 */
export function spawnLogged(command: string, args: string[], log: string, problem: (message: string) => void): ChildProcess {
  let fd: number | undefined;
  try {
    fd = openSync(log, 'a');
  } catch (err) {
    problem(`cannot write ${log} (${(err as Error).message}); its messages go to this terminal`);
  }
  try {
    const proc = spawn(command, args, { stdio: ['ignore', 'ignore', fd ?? 'inherit'] });
    proc.on('error', (err) => problem(`${command} could not start: ${err.message}`));
    return proc;
  } finally {
    // The child has its own copy now.
    if (fd !== undefined) closeSync(fd);
  }
}
