import { spawn } from 'node:child_process';
import { VOLLEY } from './mta-process';

export interface RunningFleet {
  /** The `volley local` process. */
  pid: number;
  /** Everything the fleet printed so far. */
  output(): string;
  /** Ctrl-C, then the exit code. */
  stop(): Promise<number | null>;
}

/** Runs `volley local` as `npm start` does and waits until it says it is running. */
export async function startLocalFleet(args: string[], timeoutMs = 60_000): Promise<RunningFleet> {
  const proc = spawn(process.execPath, [VOLLEY, 'local', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const fleet: RunningFleet = {
    pid: proc.pid!,
    output: () => out,
    stop: async () => {
      proc.kill('SIGINT');
      return exited;
    },
  };
  const until = Date.now() + timeoutMs;
  while (!out.includes('Ctrl-C stops everything')) {
    if (Date.now() > until || proc.exitCode !== null) {
      await fleet.stop();
      throw new Error(`the local fleet did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return fleet;
}
