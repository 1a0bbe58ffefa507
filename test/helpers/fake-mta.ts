// A stand-in for a running MTA where only its process matters (the mirror's
// fence and its "an MTA runs on this path" check read /proc/<pid>/cmdline):
// a process whose command line is `node …/volley.js mta --persistent-path
// <path>`, as production's, that does nothing. Each is killed by the pid it
// holds, and awaited, by stop() or after each test of a file importing this.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface OwnedProcess {
  pid: number;
  /** SIGKILL to this process (if still running) and wait for its exit. */
  stop(): Promise<void>;
}

const owned = new Set<OwnedProcess>();
// Registered when a test file imports this (at collection: a hook cannot be added from inside a test).
afterEach(async () => {
  for (const p of [...owned]) await p.stop();
});

/** Runs `command` as a process of this test; resolves once it runs that program (its command line is the program's). */
export async function ownProcess(command: string, args: string[]): Promise<OwnedProcess> {
  const child: ChildProcess = spawn(command, args, { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  const p: OwnedProcess = {
    pid: child.pid as number,
    async stop() {
      owned.delete(p);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
  owned.add(p);
  return p;
}

/** A process that looks like `volley mta` on `persistentPath`; its script lives in `dir`. */
export function fakeMta(dir: string, persistentPath: string): Promise<OwnedProcess> {
  const script = join(dir, 'fake-mta-bin', 'volley.js');
  mkdirSync(join(dir, 'fake-mta-bin'), { recursive: true });
  writeFileSync(script, 'setInterval(() => {}, 1 << 30);\n');
  return ownProcess(process.execPath, [script, 'mta', '--config', '/dev/null', '--persistent-path', persistentPath]);
}
