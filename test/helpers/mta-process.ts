import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { getFreePort } from './postfix-tools';

// VOLLEY_BIN runs another build (A/B comparisons of two bundles).
export const VOLLEY = process.env.VOLLEY_BIN ?? join(__dirname, '..', '..', 'dist', 'volley.js');

export interface MtaProcess {
  proc: ChildProcess;
  smtpPort: number;
  httpUrl: string;
  adminUrl: string;
  adminAddress: string;
  persistentPath: string;
  log: () => string;
  /** SIGKILL the whole process group: primary and workers at once, like a power cut. */
  crash(): Promise<void>;
  stop(): Promise<void>;
}

export interface MtaProcessOptions {
  configPath: string;
  persistentPath: string;
  workers?: number;
  ports?: { smtp: number; http: number; admin: number };
}

/** Runs the bundled `volley mta` as production runs it, on free loopback ports. */
export async function startMta(options: MtaProcessOptions): Promise<MtaProcess> {
  const ports = options.ports ?? { smtp: await getFreePort(), http: await getFreePort(), admin: await getFreePort() };
  const proc = spawn(
    process.execPath,
    [
      // e.g. BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile a bench run.
      ...(process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : []),
      VOLLEY, 'mta',
      '--config', options.configPath,
      '--persistent-path', options.persistentPath,
      '--workers', String(options.workers ?? 2),
      '--smtp-listen', `smtp=127.0.0.1:${ports.smtp}`,
      '--http-listen', `127.0.0.1:${ports.http}`,
      '--admin-listen', `127.0.0.1:${ports.admin}`,
    ],
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const adminUrl = `http://127.0.0.1:${ports.admin}`;
  const until = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`mta exited ${proc.exitCode}:\n${log}`);
    try {
      if ((await fetch(`${adminUrl}/readyz`)).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > until) {
      process.kill(-proc.pid!, 'SIGKILL');
      throw new Error(`mta not ready in 30 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    proc,
    smtpPort: ports.smtp,
    httpUrl: `http://127.0.0.1:${ports.http}`,
    adminUrl,
    adminAddress: `127.0.0.1:${ports.admin}`,
    persistentPath: options.persistentPath,
    log: () => log,
    async crash() {
      try {
        process.kill(-proc.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      await exited;
      // Workers are in the same group; give the kernel a moment to reap them and free the ports.
      await new Promise((r) => setTimeout(r, 200));
    },
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}
