import { spawn } from 'node:child_process';
import { VOLLEY } from './mta-process';

/** The endpoints `volley local` prints, read back from its output (so a test runs on whatever ports it was given). */
export interface FleetEndpoints {
  /** The lb's SMTP port on 127.0.0.1. */
  smtp: number;
  /** The lb's HTTP API, host:port. */
  http: string;
  mtas: Record<string, { smtp: number; http: string; admin: string }>;
}

export function fleetEndpoints(output: string): FleetEndpoints {
  const need = (re: RegExp): RegExpExecArray => {
    const m = re.exec(output);
    if (!m) throw new Error(`volley local printed no ${re.source}:\n${output}`);
    return m;
  };
  const mtas: FleetEndpoints['mtas'] = {};
  for (const m of output.matchAll(/^ {2}(\S+) direct +: SMTP 127\.0\.0\.1:(\d+), HTTP http:\/\/(127\.0\.0\.1:\d+)\/v1\/messages/gm)) {
    const admin = need(new RegExp(`^ {2}${m[1]} admin +: http://(127\\.0\\.0\\.1:\\d+)/queue`, 'm'))[1];
    mtas[m[1]] = { smtp: Number(m[2]), http: m[3], admin };
  }
  return {
    smtp: Number(need(/SMTP injection : 127\.0\.0\.1:(\d+)/)[1]),
    http: need(/HTTP API +: http:\/\/(127\.0\.0\.1:\d+)\/v1\/messages/)[1],
    mtas,
  };
}

export interface RunningFleet {
  /** The `volley local` process. */
  pid: number;
  /** Everything the fleet printed so far. */
  output(): string;
  /** Ctrl-C, then the exit code. */
  stop(): Promise<number | null>;
  /** Closes the read end of its stdout, as `volley local | head` does once head has its lines. */
  closeStdout(): void;
  /** Resolves with its exit code once it has exited. */
  exited: Promise<number | null>;
}

/**
 * Runs `volley local` as `npm start` does and waits until it says it is
 * running. `stderrToStdout`: its stderr is its stdout's pipe, as in
 * `volley local 2>&1 | head` (sh execs it, so `pid` is volley local's own).
 */
export async function startLocalFleet(args: string[], timeoutMs = 60_000, stderrToStdout = false): Promise<RunningFleet> {
  const proc = stderrToStdout
    ? spawn('sh', ['-c', 'exec "$0" "$@" 2>&1', process.execPath, VOLLEY, 'local', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, [VOLLEY, 'local', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
    closeStdout: () => proc.stdout.destroy(),
    exited,
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
