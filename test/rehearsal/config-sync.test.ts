// The packaged volley-config-sync (the script the timer's unit runs, now
// `volley config sync`) against the rehearsal's fake SSM and S3, with the
// instance role's credentials from the fake IMDS, reloading a unit through the
// systemctl shim: a config published the way synth publishes it (the
// parameter names the S3 object) is installed and reaches the running daemon
// as a reload; publishing a new one does it again, and an unchanged one not.
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { packageRuntime } from '../../bin/package-asset';
import { waitUntil } from '../helpers/proxy-fixtures';
import { tempDir } from '../helpers/tmp';
import { REPO_ROOT } from './assembly';
import { INSTANCE_LIKE_CREDENTIALS } from './fake-aws/env-for-test';
import { type FakeAws, startFakeAws } from './fake-aws/index';
import { startSystemctl, type SystemctlShim } from './systemctl';
import { UnitRunner } from './unit-runner';

const run = promisify(execFile);
const dir = tempDir('volley-rehearsal-config-sync-');
const etc = join(dir, 'etc-volley');
const units = join(dir, 'units');
const hups = join(dir, 'hups');
let aws: FakeAws;
let runner: UnitRunner;
let shim: SystemctlShim;
let packageDir: string;

beforeAll(async () => {
  mkdirSync(etc);
  mkdirSync(units);
  // dist/volley.js is built by npm test's pretest; packaged aside so dist/asset is not raced.
  packageDir = packageRuntime({ repoRoot: REPO_ROOT, build: false, outDir: join(dir, 'asset') });
  aws = await startFakeAws({
    byIdDir: join(dir, 'by-id'),
    instance: { instanceId: 'i-0configsync00001', availabilityZone: 'eu-west-1a', region: 'eu-west-1', localIpv4: '10.60.16.10', roleName: 'volley-mta' },
  });
  writeFileSync(
    join(etc, 'instance.env'),
    'VOLLEY_ROLE=mta\nVOLLEY_SLOT=rehearsal-mta-eu-west-1a-1\nVOLLEY_REGION=eu-west-1\nVOLLEY_CONFIG_PARAMETER=/volley/rehearsal/mta/config-url\nVOLLEY_CONFIG_SOURCE=s3-url\nVOLLEY_CONFIG_FILE=/etc/volley/volley.yaml\nVOLLEY_FILE_SECRETS=volley/rehearsal/dkim-keys\n',
  );
  // A stand-in daemon that counts its reloads (the real MTA's SIGHUP refresh is tested with the MTA).
  writeFileSync(join(dir, 'daemon.sh'), `#!/bin/bash\ntrap 'echo hup >> ${hups}' HUP\necho > ${dir}/ready\nwhile :; do sleep 1000 & wait $!; done\n`);
  chmodSync(join(dir, 'daemon.sh'), 0o755);
  writeFileSync(join(units, 'volley-mta.service'), `[Service]\nExecStart=${dir}/daemon.sh\nExecReload=/bin/kill -HUP $MAINPID\n`);
  runner = new UnitRunner({ unitDirs: [units], id: `config-sync-${process.pid}` });
  shim = await startSystemctl(runner, join(dir, 'shim'));
});

afterAll(async () => {
  await runner?.close();
  await shim?.close();
  await aws?.close();
});

/** The packaged script, as volley-config-sync.service runs it: only the SDK's variables point it at the fakes. */
function sync(): Promise<{ stdout: string; stderr: string }> {
  // --user root: this machine has no volley user to own the secret files (an instance has, made by install.sh).
  return run(join(packageDir, 'bin/volley-config-sync'), ['--etc', etc, '--user', 'root'], {
    encoding: 'utf8',
    env: {
      ...Object.fromEntries(Object.entries(INSTANCE_LIKE_CREDENTIALS).filter(([, v]) => v !== undefined)) as Record<string, string>,
      ...aws.env,
      PATH: `${shim.binDir}:${dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`,
    },
  });
}

function publish(key: string, text: string): void {
  aws.s3.put('cdk-hnb659fds-assets-333333333333-eu-west-1', key, text);
  aws.ssm.put('/volley/rehearsal/mta/config-url', `s3://cdk-hnb659fds-assets-333333333333-eu-west-1/${key}`);
}

// The MTA's secret files (mta.fileSecrets) as the operator keeps them: `{"files": {path: text}}`.
const fileSecret = (files: Record<string, string>): void => aws.secretsManager.put('volley/rehearsal/dkim-keys', JSON.stringify({ files }));

it('installs the published config, reloads the running daemon on a new one, and leaves an unchanged one alone', async () => {
  publish('first.yaml', 'hostname: first\n');
  fileSecret({ '/etc/volley/secrets/dkim/sender.pem': 'key one\n' });
  // At boot (install.sh) the daemon is not running yet: installed, nothing reloaded.
  expect((await sync()).stdout).toBe(`volley secret-files: wrote dkim/sender.pem\nvolley config sync: installed ${etc}/volley.yaml from s3://cdk-hnb659fds-assets-333333333333-eu-west-1/first.yaml\n`);
  expect(readFileSync(join(etc, 'volley.yaml'), 'utf8')).toBe('hostname: first\n');

  await runner.start('volley-mta.service');
  await waitUntil(() => existsSync(join(dir, 'ready')));
  const pid = runner.status('volley-mta.service').mainPid;
  expect((await sync()).stdout).toBe(''); // unchanged: no reload
  publish('second.yaml', 'hostname: second\n');
  expect((await sync()).stdout).toContain('volley config sync: reloaded volley-mta.service');
  expect(readFileSync(join(etc, 'volley.yaml'), 'utf8')).toBe('hostname: second\n');
  await waitUntil(() => existsSync(hups) && readFileSync(hups, 'utf8') === 'hup\n');
  expect(runner.status('volley-mta.service')).toMatchObject({ state: 'active', mainPid: pid }); // reloaded in place, not restarted
  expect(aws.ssm.reads.length).toBe(3);
  await runner.stop('volley-mta.service');
});

it('the MTA\'s secret files are written under <etc>/secrets 0640, and a rotated one reloads the daemon though the config is unchanged; a file no secret lists is removed', async () => {
  await runner.start('volley-mta.service');
  await waitUntil(() => existsSync(join(dir, 'ready')));
  const pid = runner.status('volley-mta.service').mainPid;
  const hupsBefore = readFileSync(hups, 'utf8');
  expect((await sync()).stdout).toBe(''); // nothing changed: no reload
  fileSecret({ '/etc/volley/secrets/dkim/sender.pem': 'key two\n', '/etc/volley/secrets/webhook.secret': 'whsec_x\n' });
  expect((await sync()).stdout).toBe('volley secret-files: wrote dkim/sender.pem\nvolley secret-files: wrote webhook.secret\nvolley config sync: reloaded volley-mta.service\n');
  expect(readFileSync(join(etc, 'secrets/dkim/sender.pem'), 'utf8')).toBe('key two\n');
  expect(statSync(join(etc, 'secrets/dkim/sender.pem')).mode & 0o777).toBe(0o640);
  await waitUntil(() => readFileSync(hups, 'utf8') === `${hupsBefore}hup\n`);
  expect(runner.status('volley-mta.service')).toMatchObject({ state: 'active', mainPid: pid });
  fileSecret({ '/etc/volley/secrets/dkim/sender.pem': 'key two\n' });
  expect((await sync()).stdout).toBe('volley secret-files: removed webhook.secret (no secret lists it any more)\nvolley config sync: reloaded volley-mta.service\n');
  expect(existsSync(join(etc, 'secrets/webhook.secret'))).toBe(false);
  await runner.stop('volley-mta.service');
});
