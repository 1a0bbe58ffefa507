// Telling an MTA lock's pid apart from a program that reused it: command
// lines as production, the local fleet and the tests start `volley mta`
// (written to a stand-in /proc), against this node's persistent path.
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mtaIdentity } from '../../../runtime/mirror/mta-identity';
import { tempDir } from '../../helpers/tmp';

const proc = tempDir('volley-mta-identity-');
const pp = join(proc, 'var-lib-volley');
mkdirSync(pp);
let nextPid = 100;

/** A stand-in /proc/<pid> with this argv (and a cwd link when given); returns the pid. */
function processWith(argv: string[], cwd?: string): number {
  const pid = nextPid++;
  mkdirSync(join(proc, String(pid)));
  writeFileSync(join(proc, String(pid), 'cmdline'), argv.map((a) => `${a}\0`).join(''));
  if (cwd) symlinkSync(cwd, join(proc, String(pid), 'cwd'));
  return pid;
}

describe('mtaIdentity', () => {
  it.each([
    ['the instance wrapper', ['node-24', '--enable-source-maps', '/opt/volley/bin/../lib/volley.js', 'mta', '--config', '/etc/volley/volley.yaml', '--persistent-path', pp]],
    ['--persistent-path=', ['node', 'dist/volley.js', 'mta', `--persistent-path=${pp}`]],
    ['no --persistent-path (from the config)', ['node', '/opt/volley/lib/volley.js', 'mta', '--config', 'volley.yaml']],
    ['a path with a trailing slash', ['/usr/bin/volley', 'mta', '--persistent-path', `${pp}/`]],
  ])('an MTA: %s', (_name, argv) => {
    expect(mtaIdentity(processWith(argv), pp, proc)).toEqual({ kind: 'mta' });
  });

  it('a relative --persistent-path is resolved from the process\'s working directory', () => {
    expect(mtaIdentity(processWith(['node', 'volley.js', 'mta', '--persistent-path', 'var-lib-volley'], proc), pp, proc)).toEqual({ kind: 'mta' });
    expect(mtaIdentity(processWith(['node', 'volley.js', 'mta', '--persistent-path', 'var-lib-volley'], pp), pp, proc)).toMatchObject({ kind: 'other' });
  });

  it.each([
    ['an unrelated program', ['sleep', '1000']],
    ['another volley command', ['node', '/opt/volley/lib/volley.js', 'mirror', '--config', '/etc/volley/mirror.yaml']],
    ['the MTA of another persistent path', ['node', 'dist/volley.js', 'mta', '--persistent-path', '/var/lib/other']],
    ['a zombie (empty command line)', []],
  ])('not this path\'s MTA: %s', (_name, argv) => {
    expect(mtaIdentity(processWith(argv), pp, proc)).toEqual({ kind: 'other', cmdline: argv.join(' ') });
  });

  it('no such process: nothing to tell from', () => {
    expect(mtaIdentity(99_999, pp, proc)).toEqual({ kind: 'unknown' });
  });
});
