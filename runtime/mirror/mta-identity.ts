// Whether the pid an MTA lock names is still that MTA. The lock is a pid
// file: after kill -9 or a crash it stays behind, and its pid may since have
// been reused by an unrelated process, which a fence must not signal. The
// process's command line (/proc/<pid>/cmdline) tells: an MTA runs as
// `… volley[.js] mta …`, and when it was given `--persistent-path` that path
// must be this one.
import { readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { basename, resolve } from 'node:path';

export type MtaIdentity =
  /** A `volley mta` on this persistent path (or one started without `--persistent-path`: from its config, it cannot be told apart). */
  | { kind: 'mta' }
  /** A live process that is not an MTA on this path: the lock is stale. */
  | { kind: 'other'; cmdline: string }
  /** Nothing to tell from: no such process now (or /proc cannot be read). */
  | { kind: 'unknown' };

export function mtaIdentity(pid: number, persistentPath: string, proc = '/proc'): MtaIdentity {
  let raw: string;
  try {
    raw = readFileSync(`${proc}/${pid}/cmdline`, 'utf8');
  } catch {
    return { kind: 'unknown' };
  }
  // A zombie (or a kernel thread) has an empty command line: nothing of an MTA runs there.
  const argv = raw.split('\0');
  if (argv[argv.length - 1] === '') argv.pop();
  const cmdline = argv.join(' ');
  const at = argv.findIndex((a, i) => /^volley(\.js)?$/.test(basename(a)) && argv[i + 1] === 'mta');
  if (at < 0) return { kind: 'other', cmdline };
  const path = persistentPathArg(argv.slice(at + 2));
  if (path === undefined) return { kind: 'mta' };
  let cwd: string | undefined;
  try {
    cwd = readlinkSync(`${proc}/${pid}/cwd`);
  } catch {
    cwd = undefined;
  }
  // A relative path whose base cannot be read: it may be this one.
  if (!path.startsWith('/') && cwd === undefined) return { kind: 'mta' };
  return canonical(resolve(cwd ?? '/', path)) === canonical(persistentPath) ? { kind: 'mta' } : { kind: 'other', cmdline };
}

function persistentPathArg(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--persistent-path') return args[i + 1];
    if (args[i].startsWith('--persistent-path=')) return args[i].slice('--persistent-path='.length);
  }
  return undefined;
}

function canonical(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}
