// `npm test` on a fresh machine: the peers script either installs what is
// missing (as root) or stops at once naming the one command to run; run by a
// user who is not root, it stops at once saying to run as root.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp';

const script = join(__dirname, 'debian-peers.sh');

describe('test/setup/debian-peers.sh', () => {
  const dir = tempDir('volley-peers-');

  it('passes quietly when every peer is installed', () => {
    const run = spawnSync('bash', [script], { encoding: 'utf8' });
    expect(run.status).toBe(0);
    expect(run.stderr).toBe('');
  });

  it('as a user who is not root, with every peer installed, fails at once with the one-line remedy', () => {
    const run = spawnSync(spawnSync('which', ['setpriv'], { encoding: 'utf8' }).stdout.trim(), ['--reuid=65534', '--regid=65534', '--clear-groups', 'bash', script], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH },
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toBe('npm test: some tests mount a tmpfs, attach loop devices or create network namespaces, which needs root: run it as root (sudo npm test)\n');
  });

  it('as a user who cannot install, fails at once naming the packages and the command', () => {
    // A PATH with only what the script itself needs: every peer looks missing.
    chmodSync(dir, 0o755); // the unprivileged user below must reach the links
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    for (const tool of ['bash', 'id', 'sort', 'printf', 'perl']) symlinkSync(spawnSync('which', [tool], { encoding: 'utf8' }).stdout.trim(), join(bin, tool));
    const run = spawnSync(spawnSync('which', ['setpriv'], { encoding: 'utf8' }).stdout.trim(), ['--reuid=65534', '--regid=65534', '--clear-groups', join(bin, 'bash'), script], {
      encoding: 'utf8',
      env: { PATH: bin },
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('missing: ');
    expect(run.stderr).toMatch(/Install them first \(as root\): +apt-get install -y --no-install-recommends .*haproxy.*postfix/);
    // the DANE tests' DNSSEC world: bind9 signs and serves, unbound validates
    expect(run.stderr).toMatch(/--no-install-recommends bind9 bind9-dnsutils bind9-utils .*unbound/);
  });
});
