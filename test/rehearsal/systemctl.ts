// A `systemctl` for the rehearsal: the instance's scripts (install.sh,
// volley-config-sync) and the bootstrap call `systemctl` by name; a small
// executable written at run time, first on the units' PATH, forwards its
// arguments over a unix socket to the UnitRunner, which answers with
// systemctl's output and exit status (0 ok, 1 failure, 3 not active for
// is-active, 5 no such unit).
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Server, Socket } from 'node:net';
import { join } from 'node:path';
import { errorCode } from '../../runtime/shared/errors';
import type { UnitRunner } from './unit-runner';

export interface SystemctlResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

const VERBS_ON_UNITS = ['start', 'stop', 'restart', 'reload', 'reload-or-restart', 'is-active', 'is-failed', 'is-enabled', 'enable', 'disable', 'status', 'show'];

/** One systemctl invocation against the runner. */
export async function systemctl(runner: UnitRunner, argv: readonly string[]): Promise<SystemctlResult> {
  const flags = argv.filter((a) => a.startsWith('-'));
  const words = argv.filter((a) => !a.startsWith('-'));
  const [verb, ...rest] = words;
  const quiet = flags.includes('--quiet') || flags.includes('-q');
  const noBlock = flags.includes('--no-block');
  const out: string[] = [];
  const err: string[] = [];
  const done = (code: number): SystemctlResult => ({ code, stdout: quiet ? '' : out.join(''), stderr: err.join('') });
  if (verb === 'daemon-reload') {
    runner.daemonReload();
    return done(0);
  }
  if (!verb || !VERBS_ON_UNITS.includes(verb)) {
    err.push(`Unknown command verb '${verb ?? ''}' (the rehearsal's systemctl knows daemon-reload, ${VERBS_ON_UNITS.join(', ')}).\n`);
    return done(1);
  }
  // `show -p NAME` takes a property argument that is not a unit.
  const property = verb === 'show' ? argv[argv.indexOf('-p') + 1] ?? argv.find((a) => a.startsWith('--property='))?.slice(11) : undefined;
  const units = rest.filter((u) => u !== property);
  if (units.length === 0) {
    err.push(`Too few arguments.\n`);
    return done(1);
  }
  let code = 0;
  for (const unit of units) {
    try {
      switch (verb) {
        case 'start':
          if (noBlock) void runner.start(unit).catch(() => undefined); // the failure is the unit's state, as with a queued job
          else await runner.start(unit);
          break;
        case 'stop':
          await runner.stop(unit);
          break;
        case 'restart':
          await runner.restart(unit);
          break;
        case 'reload':
          await runner.reload(unit);
          break;
        case 'reload-or-restart':
          await runner.reloadOrRestart(unit);
          break;
        case 'is-active':
        case 'is-failed': {
          const state = runner.status(unit).state;
          out.push(`${state}\n`);
          if ((verb === 'is-active') !== (state === 'active')) code = verb === 'is-active' ? 3 : 1;
          break;
        }
        case 'is-enabled': {
          const enabled = runner.status(unit).enabled;
          out.push(enabled ? 'enabled\n' : 'disabled\n');
          if (!enabled) code = 1;
          break;
        }
        case 'enable':
          runner.enable(unit);
          if (flags.includes('--now')) await runner.start(unit);
          break;
        case 'disable':
          runner.disable(unit);
          if (flags.includes('--now')) await runner.stop(unit);
          break;
        case 'status': {
          const s = runner.status(unit);
          out.push(`● ${s.name}\n     Active: ${s.state} (Result: ${s.result})\n   Main PID: ${s.mainPid ?? '-'}\n`, runner.journal(unit).slice(-2000));
          if (s.state !== 'active') code = 3;
          break;
        }
        case 'show': {
          const s = runner.status(unit);
          const props: Record<string, string> = { MainPID: String(s.mainPid ?? 0), ActiveState: s.state, Result: s.result, NRestarts: String(s.restarts), UnitFileState: s.enabled ? 'enabled' : 'disabled' };
          const names = property ? property.split(',') : Object.keys(props);
          for (const name of names) out.push(flags.includes('--value') ? `${props[name] ?? ''}\n` : `${name}=${props[name] ?? ''}\n`);
          break;
        }
      }
    } catch (e) {
      const notFound = errorCode(e) === 'EUNITNOTFOUND';
      err.push(notFound ? `Unit ${unit} not found.\n` : `Job for ${unit} failed: ${(e as Error).message}\n`);
      code = notFound ? 5 : 1;
    }
  }
  return done(code);
}

/** The client: an executable `systemctl` that relays argv and prints the answer (node, since a shell cannot speak to a unix socket). */
function clientSource(socket: string): string {
  return `#!${process.execPath}
// The rehearsal's systemctl: relays its arguments to the unit runner (test/rehearsal/systemctl.ts).
const net = require('node:net');
const conn = net.connect(${JSON.stringify(socket)});
let reply = '';
conn.on('connect', () => conn.end(JSON.stringify(process.argv.slice(2))));
conn.on('data', (d) => (reply += d));
conn.on('error', (e) => { process.stderr.write('systemctl: cannot reach the rehearsal unit runner: ' + e.message + '\\n'); process.exit(1); });
conn.on('end', () => {
  const r = JSON.parse(reply);
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  process.exitCode = r.code;
});
`;
}

export interface SystemctlShim {
  /** Put first on the units' PATH: holds `systemctl`. */
  readonly binDir: string;
  close(): Promise<void>;
}

/** Serves the runner on a unix socket under `dir` and writes `dir/bin/systemctl`. */
export function startSystemctl(runner: UnitRunner, dir: string): Promise<SystemctlShim> {
  const binDir = join(dir, 'bin');
  const socket = join(dir, 'systemctl.sock');
  mkdirSync(binDir, { recursive: true });
  rmSync(socket, { force: true });
  const connections = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (conn) => {
    connections.add(conn);
    conn.on('close', () => connections.delete(conn));
    let request = '';
    conn.on('data', (d) => (request += d));
    conn.on('end', () => {
      let argv: string[];
      try {
        argv = JSON.parse(request) as string[];
      } catch {
        conn.end(JSON.stringify({ code: 1, stdout: '', stderr: 'systemctl: malformed request\n' }));
        return;
      }
      systemctl(runner, argv).then(
        (r) => conn.end(JSON.stringify(r)),
        (e: Error) => conn.end(JSON.stringify({ code: 1, stdout: '', stderr: `systemctl: ${e.message}\n` })),
      );
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => {
      const path = join(binDir, 'systemctl');
      writeFileSync(path, clientSource(socket));
      chmodSync(path, 0o755);
      resolve({
        binDir,
        close: () =>
          new Promise((done) => {
            for (const c of connections) c.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
