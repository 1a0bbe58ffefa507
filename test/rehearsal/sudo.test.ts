// The rehearsal's sudo and visudo stand-ins: visudo accepts the rule
// install.sh writes for an HA pair's mirror and refuses a malformed one; sudo
// runs exactly the command lines a NOPASSWD rule names for its user, and
// refuses any other as `sudo -n` does.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './assembly';
import { writeSudoTools } from './sudo';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'volley-sudo-'));
  mkdirSync(join(dir, 'bin'));
  mkdirSync(join(dir, 'sudoers.d'));
  writeSudoTools(join(dir, 'bin'), { sudoersDir: join(dir, 'sudoers.d') });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const run = (tool: string, args: string[]) => spawnSync(join(dir, 'bin', tool), args, { encoding: 'utf8' });

it('visudo -cqf accepts the rule install.sh writes for the mirror, and refuses a line sudo would not parse', () => {
  const install = readFileSync(join(REPO_ROOT, 'assets/user-data/install.sh'), 'utf8');
  const rule = /<<'SUDOERS'\n([\s\S]*?)\nSUDOERS\n/.exec(install)?.[1];
  expect(rule).toContain('volley ALL=(root) NOPASSWD: /usr/bin/systemctl start --no-block volley-mta.service');
  writeFileSync(join(dir, 'mirror'), `${rule}\n`);
  expect(run('visudo', ['-cqf', join(dir, 'mirror')])).toMatchObject({ status: 0, stdout: '' });
  writeFileSync(join(dir, 'bad'), 'volley ALL = systemctl start volley-mta.service\n');
  expect(run('visudo', ['-cqf', join(dir, 'bad')])).toMatchObject({ status: 1, stderr: expect.stringContaining('syntax error') });
});

it('sudo -n runs a command line a NOPASSWD rule names for volley, exactly; any other line, or a rule for another user, is refused', () => {
  writeFileSync(join(dir, 'sudoers.d', 'volley-mirror'), `Defaults:volley !requiretty\nvolley ALL=(root) NOPASSWD: /bin/echo promoted\nother ALL=(root) NOPASSWD: /bin/echo other\n`);
  // A file with a dot is skipped, as sudo's includedir skips it (install.sh's .partial before its check).
  writeFileSync(join(dir, 'sudoers.d', 'x.partial'), 'volley ALL=(root) NOPASSWD: /bin/echo partial\n');
  expect(run('sudo', ['-n', '/bin/echo', 'promoted'])).toMatchObject({ status: 0, stdout: 'promoted\n' });
  for (const line of [['/bin/echo', 'promoted', 'more'], ['/bin/echo'], ['/bin/echo', 'other'], ['/bin/echo', 'partial']]) {
    expect({ line, ...run('sudo', ['-n', ...line]) }).toMatchObject({ line, status: 1, stdout: '', stderr: 'sudo: a password is required\n' });
  }
});
