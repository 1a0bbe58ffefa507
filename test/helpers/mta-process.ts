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
  /**
   * SIGTERM to the primary (a graceful stop), then waits for its exit; past
   * `deadlineMs` (default STOP_DEADLINE_MS) it SIGKILLs the whole process
   * group and rejects, so a hung MTA fails its test instead of hanging the run.
   */
  stop(options?: { deadlineMs?: number }): Promise<void>;
}

/** Longer than the primary's own 30 s deadline for its workers: a stop that needs more is hung. */
export const STOP_DEADLINE_MS = 45_000;

export interface MtaProcessOptions {
  configPath: string;
  persistentPath: string;
  workers?: number;
  ports?: { smtp: number; http: number; admin: number };
  /** Added to the test's own environment (credentials, VOLLEY_ENV): what systemd's EnvironmentFile gives an instance. */
  env?: Record<string, string>;
  /** Given the output so far as soon as the process runs: a test can wait on a log line before the node is ready. */
  whileStarting?: (log: () => string) => void;
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
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } },
  );
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  options.whileStarting?.(() => log);
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
    async stop({ deadlineMs = STOP_DEADLINE_MS } = {}) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), deadlineMs)));
      const outcome = await Promise.race([exited.then(() => 'exited' as const), late]);
      clearTimeout(timer);
      if (outcome === 'exited') return;
      // Still running, so the group (led by the primary, detached above) is this helper's own.
      try {
        process.kill(-proc.pid!, 'SIGKILL');
      } catch {
        // it went in between
      }
      await exited;
      throw new Error(`mta did not stop within ${deadlineMs} ms of SIGTERM; its process group was killed:\n${log.slice(-2000)}`);
    },
  };
}
