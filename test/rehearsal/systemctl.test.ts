// The systemctl shim driven by a real shell script, as install.sh and
// volley-config-sync drive systemctl: exit statuses, --quiet, --no-block,
// reload reaching the main process, show -p MainPID.
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { waitUntil } from '../helpers/proxy-fixtures';
import { tempDir } from '../helpers/tmp';
import { startSystemctl, type SystemctlShim } from './systemctl';
import { UnitRunner } from './unit-runner';

const run = promisify(execFile);
const dir = tempDir('volley-systemctl-');
const units = join(dir, 'units');
let runner: UnitRunner;
let shim: SystemctlShim;

beforeAll(async () => {
  mkdirSync(units);
  writeFileSync(join(dir, 'daemon.sh'), `#!/bin/bash\ntrap 'echo hup >> ${dir}/hups' HUP\necho > ${dir}/ready\nwhile :; do sleep 1000 & wait $!; done\n`);
  chmodSync(join(dir, 'daemon.sh'), 0o755);
  writeFileSync(join(units, 'demo.service'), `[Service]\nExecStart=${dir}/daemon.sh\nExecReload=/bin/kill -HUP $MAINPID\n`);
  writeFileSync(join(units, 'broken.service'), `[Service]\nType=oneshot\nExecStart=/bin/false\n`);
  runner = new UnitRunner({ unitDirs: [units], id: `systemctl-test-${process.pid}` });
  shim = await startSystemctl(runner, join(dir, 'shim'));
});

afterAll(async () => {
  await runner.close();
  await shim.close();
});

async function script(body: string): Promise<{ stdout: string; stderr: string }> {
  const path = join(dir, `script-${Date.now()}.sh`);
  writeFileSync(path, `#!/bin/bash\nset -euo pipefail\n${body}\n`);
  chmodSync(path, 0o755);
  return run(path, [], { env: { PATH: `${shim.binDir}:/usr/sbin:/usr/bin:/sbin:/bin` }, encoding: 'utf8' });
}

it('answers a shell script\'s systemctl calls with systemctl\'s output and exit statuses', async () => {
  const { stdout } = await script(`
systemctl daemon-reload
systemctl enable demo.service
systemctl is-enabled demo.service
systemctl start demo.service
while [ ! -e ${dir}/ready ]; do sleep 0.02; done # a HUP before the daemon's trap is set would kill it
systemctl is-active demo.service
if systemctl is-active --quiet demo.service; then echo quiet-active; fi
systemctl reload demo.service
echo "mainpid=$(systemctl show -p MainPID --value demo.service)"
set +e
systemctl start missing.service; echo "missing=$?"
systemctl start broken.service 2>/dev/null; echo "broken=$?"
systemctl is-failed --quiet broken.service; echo "is-failed=$?"
systemctl frobnicate demo.service 2>/dev/null; echo "verb=$?"
set -e
systemctl stop demo.service
systemctl is-active demo.service || echo "after-stop=$?"
`);
  const lines = stdout.trim().split('\n');
  expect(lines.slice(0, 3)).toEqual(['enabled', 'active', 'quiet-active']);
  expect(lines).toContain('missing=5');
  expect(lines).toContain('broken=1');
  expect(lines).toContain('is-failed=0');
  expect(lines).toContain('verb=1');
  expect(lines.slice(-2)).toEqual(['inactive', 'after-stop=3']);
  const mainpid = Number(lines.find((l) => l.startsWith('mainpid='))?.slice(8));
  expect(mainpid).toBeGreaterThan(1);
  // The reload reached the main process through ExecReload's $MAINPID.
  await waitUntil(() => existsSync(join(dir, 'hups')) && readFileSync(join(dir, 'hups'), 'utf8') === 'hup\n');
});

it('start --no-block returns before the unit is up, as the bootstrap start in install.sh expects', async () => {
  writeFileSync(join(units, 'slow.service'), `[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c "while [ ! -e ${dir}/go ]; do sleep 0.05; done"\n`);
  const { stdout } = await script('systemctl start --no-block slow.service; systemctl is-active slow.service || true');
  expect(stdout).toBe('activating\n');
  writeFileSync(join(dir, 'go'), '');
  await waitUntil(() => runner.status('slow.service').state === 'active');
});

it('reload-or-restart reloads a running unit in place and starts a stopped one, as volley config sync relies on', async () => {
  writeFileSync(join(dir, 'hups'), '');
  rmSync(join(dir, 'ready'), { force: true }); // a HUP before the daemon's trap is set would kill it
  await runner.start('demo.service');
  await waitUntil(() => existsSync(join(dir, 'ready')));
  const pid = runner.status('demo.service').mainPid;
  await script('systemctl reload-or-restart demo.service');
  await waitUntil(() => readFileSync(join(dir, 'hups'), 'utf8') === 'hup\n');
  expect(runner.status('demo.service')).toMatchObject({ state: 'active', mainPid: pid });
  await runner.stop('demo.service');
  await script('systemctl reload-or-restart demo.service');
  expect(runner.status('demo.service').state).toBe('active');
  expect(runner.status('demo.service').mainPid).not.toBe(pid);
  await runner.stop('demo.service');
});
