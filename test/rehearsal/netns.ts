// The rehearsal's "instance": a network namespace of its own whose loopback
// carries the environment's private and sending addresses (the very
// addresses of the environment file, no remapping), so daemons bind and
// connect to them exactly as on the instance while nothing leaves this
// machine; and loop devices standing in for EBS volumes. Everything made here
// is removed by close(), on process exit and on SIGINT/SIGTERM/SIGHUP, and a
// later run removes what a killed run left behind (names carry the pid).
import { ChildProcess, execFile, execFileSync, spawn, SpawnOptions } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { VolleyError } from '../../runtime/shared/errors';
import { registerExitCleanup } from '../helpers/postfix-tools';

const PREFIX = 'volley-rh';
let created = 0;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ip(args: string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? '').trim();
    throw new VolleyError('ENETNS', `ip ${args.join(' ')} failed: ${stderr || (err as Error).message}`);
  }
}

/** Deletes namespaces and detaches loop devices left by rehearsal runs whose process is gone. Returns what it removed. */
export function removeStale(): string[] {
  const removed: string[] = [];
  for (const line of ip(['netns', 'list']).split('\n')) {
    const m = new RegExp(`^(${PREFIX}-(\\d+)-\\d+)\\b`).exec(line.trim());
    if (m && !pidAlive(Number(m[2]))) {
      ip(['netns', 'del', m[1]]);
      removed.push(m[1]);
    }
  }
  const loops = execFileSync('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8' });
  for (const line of loops.split('\n')) {
    const [device, file = ''] = line.trim().split(/\s+/);
    const m = new RegExp(`/${PREFIX}-loop-(\\d+)-\\d+\\.img`).exec(file);
    if (device && m && !pidAlive(Number(m[1]))) {
      execFileSync('losetup', ['--detach', device]);
      rmSync(file.replace(/ \(deleted\)$/, ''), { force: true });
      removed.push(device);
    }
  }
  return removed;
}

export interface LoopDevice {
  readonly device: string;
  readonly image: string;
  detach(): void;
}

/** A sparse image file of `sizeMiB` under `dir`, attached to a free loop device. */
export function createLoopDevice(dir: string, sizeMiB: number): LoopDevice {
  const image = join(dir, `${PREFIX}-loop-${process.pid}-${++created}.img`);
  execFileSync('truncate', ['--size', `${sizeMiB}M`, image]);
  let device: string;
  try {
    device = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
  } catch (err) {
    rmSync(image, { force: true });
    throw new VolleyError('ELOOP', `losetup --find --show ${image} failed: ${(err as Error).message}`);
  }
  let detached = false;
  const detach = (): void => {
    if (detached) return;
    detached = true;
    unregister();
    try {
      execFileSync('losetup', ['--detach', device], { stdio: 'ignore' });
    } finally {
      rmSync(image, { force: true });
    }
  };
  const unregister = registerExitCleanup(detach);
  return { device, image, detach };
}

export interface Netns {
  readonly name: string;
  /** Prefix for a command to run inside the namespace (`ip netns exec NAME`, which execs: the pid stays the command's). */
  readonly wrap: string[];
  /** Adds an address (e.g. "10.0.1.10/32") to the namespace's loopback. */
  addAddress(cidr: string): void;
  /** IPv4 addresses on the namespace's loopback. */
  addresses(): string[];
  /** Runs a command inside the namespace to its end. */
  exec(argv: string[], options?: { env?: NodeJS.ProcessEnv; input?: string }): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Starts a long-running process inside the namespace. */
  spawn(argv: string[], options?: SpawnOptions): ChildProcess;
  close(): void;
}

/**
 * Creates a namespace with loopback up and `addresses` on it. Stale ones
 * from killed runs are removed first.
 */
export function createNetns(addresses: string[] = []): Netns {
  removeStale();
  const name = `${PREFIX}-${process.pid}-${++created}`;
  ip(['netns', 'add', name]);
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    unregister();
    // Deleting the namespace file; processes still inside keep it alive until they exit, so callers stop theirs first.
    if (existsSync(`/run/netns/${name}`)) ip(['netns', 'del', name]);
  };
  const unregister = registerExitCleanup(close);
  const inside = (args: string[]): string => ip(['-n', name, ...args]);
  try {
    inside(['link', 'set', 'lo', 'up']);
    for (const cidr of addresses) inside(['address', 'add', cidr, 'dev', 'lo']);
  } catch (err) {
    close();
    throw err;
  }
  const wrap = ['ip', 'netns', 'exec', name];
  return {
    name,
    wrap,
    addAddress: (cidr) => void inside(['address', 'add', cidr, 'dev', 'lo']),
    addresses: () =>
      inside(['-4', '-o', 'address', 'show', 'dev', 'lo'])
        .split('\n')
        .map((l) => /inet (\S+)\//.exec(l)?.[1])
        .filter((a): a is string => a !== undefined),
    exec: (argv, options = {}) =>
      new Promise((resolve) => {
        const child = execFile(wrap[0], [...wrap.slice(1), ...argv], { env: options.env ?? process.env, encoding: 'utf8' }, (err, stdout, stderr) => {
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : 127) : 0, stdout, stderr });
        });
        if (options.input !== undefined) child.stdin?.end(options.input);
      }),
    spawn: (argv, options = {}) => spawn(wrap[0], [...wrap.slice(1), ...argv], options),
    close,
  };
}
