// Runs the bundled `volley mirror` daemon as production runs it, and its
// `status` / `promote` verbs, for tests with real processes on loopback.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { VOLLEY } from './mta-process';
import { registerExitCleanup } from './postfix-tools';
import { waitUntil } from './proxy-fixtures';

export interface MirrorProcess {
  proc: ChildProcess;
  log: () => string;
  /** SIGKILL (a power cut of this daemon). */
  crash(): Promise<void>;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<void>;
}

export async function startMirror(configPath: string, adminAddress: string): Promise<MirrorProcess> {
  const proc = spawn(process.execPath, [VOLLEY, 'mirror', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const unregister = registerExitCleanup(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  void exited.then(unregister);
  let up = false;
  const poll = setInterval(() => void fetch(`http://${adminAddress}/healthz`).then((r) => (up = r.ok), () => undefined), 50);
  try {
    await waitUntil(() => up || proc.exitCode !== null, 30_000, () => `mirror (${configPath}) not up: ${log}`);
  } finally {
    clearInterval(poll);
  }
  if (!up) throw new Error(`mirror exited ${proc.exitCode}:\n${log}`);
  const signal = async (s: NodeJS.Signals): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(s);
    await exited;
  };
  return { proc, log: () => log, crash: () => signal('SIGKILL'), stop: () => signal('SIGTERM') };
}

/** `volley mirror <args>`: its exit code and output. */
export function mirrorCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [VOLLEY, 'mirror', ...args], (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}
