// The four pieces together, around the real bootstrap code: the SDK finds the
// slot's volume in the fake EC2 (credentials from the fake IMDS, both through
// the SDK's endpoint variables), attaching it makes its NVMe name appear for a
// loop device, the bootstrap formats and mounts it, and its
// `systemctl start` reaches the unit runner, whose unit asserts the mount
// point, as volley-mta.service does, before it starts.
import { EC2Client } from '@aws-sdk/client-ec2';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { bootstrapMta, LinuxSystem, MTA_DEFAULTS, readInstanceIdentity, realClock } from '../../runtime/bootstrap';
import { getFreePort } from '../helpers/postfix-tools';
import { INSTANCE_LIKE_CREDENTIALS, useEnv } from './fake-aws/env-for-test';
import { type FakeAws, startFakeAws } from './fake-aws/index';
import { createLoopDevice, type LoopDevice } from './netns';
import { startSystemctl, type SystemctlShim } from './systemctl';
import { UnitRunner } from './unit-runner';

// Not tempDir(): it would remove the directory before this file's afterAll unmounts the volume inside it.
const dir = mkdtempSync(join(tmpdir(), 'volley-together-'));
const mountPoint = join(dir, 'var-lib-volley');
const units = join(dir, 'units');
let aws: FakeAws;
let loop: LoopDevice;
let runner: UnitRunner;
let shim: SystemctlShim;
let port: number;

beforeAll(async () => {
  mkdirSync(units);
  loop = createLoopDevice(dir, 64);
  aws = await startFakeAws({
    byIdDir: join(dir, 'by-id'),
    instance: { instanceId: 'i-0rehearsal000001', availabilityZone: 'eu-west-1a', region: 'eu-west-1', localIpv4: '10.0.1.10', roleName: 'volley-mta' },
  });
  aws.ec2.addVolume({ volumeId: 'vol-0rehearsal01', availabilityZone: 'eu-west-1a', sizeGiB: 1, state: 'available', tags: { 'volley:slot': 'dev-mta-1' }, loopDevice: loop.device });
  port = await getFreePort();
  writeFileSync(
    join(dir, 'daemon.js'),
    `require('node:fs').writeFileSync(process.argv[3] + '/started-by', 'the unit');
require('node:http').createServer((q, s) => s.end('ready')).listen(Number(process.argv[2]), '127.0.0.1');`,
  );
  writeFileSync(join(units, 'volley-mta.service'), `[Unit]\nAssertPathIsMountPoint=${mountPoint}\n[Service]\nExecStart=${process.execPath} ${dir}/daemon.js ${port} ${mountPoint}\n`);
  runner = new UnitRunner({ unitDirs: [units], id: `together-${process.pid}` });
  shim = await startSystemctl(runner, join(dir, 'shim'));
});
useEnv(() => ({ ...INSTANCE_LIKE_CREDENTIALS, ...aws.env, PATH: `${shim.binDir}:${process.env.PATH}` }));

afterAll(async () => {
  await runner?.close();
  await shim?.close();
  await aws?.close();
  try {
    execFileSync('umount', [mountPoint], { stdio: 'ignore' });
  } catch {
    // not mounted
  }
  loop?.detach();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * The real LinuxSystem, whose `systemctl` is found on this test's PATH: jest
 * gives a test file its own copy of process.env, which child_process does not
 * see unless it is passed. (Under the runner the bootstrap is a unit process
 * whose PATH is the runner's, so the shim is found without this.)
 */
class ShimPathSystem extends LinuxSystem {
  override async startUnit(unit: string): Promise<void> {
    await promisify(execFile)('systemctl', ['start', unit], { env: process.env });
  }
}

it('runs the bootstrap of an MTA slot against the fakes, a loop device and the unit runner', async () => {
  await expect(runner.start('volley-mta.service')).rejects.toMatchObject({ code: 'EUNITASSERT' }); // no volume yet: refused

  const log: string[] = [];
  await bootstrapMta(
    {
      ec2: new EC2Client({ region: 'eu-west-1' }),
      system: new ShimPathSystem(),
      clock: realClock,
      log: { info: (m) => log.push(m), error: (m) => log.push(`error: ${m}`) },
      identity: () => readInstanceIdentity(`${aws.env.AWS_EC2_METADATA_SERVICE_ENDPOINT}/latest`),
    },
    { ...MTA_DEFAULTS, slot: 'dev-mta-1', persistentPath: mountPoint, byIdDir: join(dir, 'by-id'), readyUrl: `http://127.0.0.1:${port}/readyz` },
  );

  expect(log.join('\n')).toContain('is blank: making an ext4 filesystem');
  expect(aws.ec2.volumes.get('vol-0rehearsal01')).toMatchObject({ state: 'in-use', attachment: { instanceId: 'i-0rehearsal000001', state: 'attached' } });
  expect(execFileSync('findmnt', ['-n', '-o', 'SOURCE', '--mountpoint', mountPoint], { encoding: 'utf8' }).trim()).toBe(loop.device);
  expect(runner.status('volley-mta.service').state).toBe('active');
  expect(readFileSync(join(mountPoint, 'started-by'), 'utf8')).toBe('the unit');
  await runner.stop('volley-mta.service');
});
