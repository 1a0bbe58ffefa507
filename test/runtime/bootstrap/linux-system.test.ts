// LinuxSystem.signal: the bootstrap reports to CloudFormation with the SDK's
// SignalResource (this instance's id as UniqueId), so it goes wherever the
// SDK is pointed (AWS_ENDPOINT_URL_CLOUDFORMATION: the rehearsal's fake), with
// the role's credentials from instance metadata, and needs no cfn-signal. And
// LinuxSystem.probe: which volume counts as blank (the bootstrap formats only those).
import { CloudFormationClient, SignalResourceCommand } from '@aws-sdk/client-cloudformation';
import { mockClient } from 'aws-sdk-client-mock';
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BLANK_CHECK_BYTES, LinuxSystem, SIGNAL_RETRY_BOUND_MS } from '../../../runtime/bootstrap/linux-system';
import { tempDir } from '../../helpers/tmp';
import { interruptedMkfs, leadingDataIn, wipePrimaryMagic } from './ext4-images';
import { INSTANCE_LIKE_CREDENTIALS, useEnv } from '../../rehearsal/fake-aws/env-for-test';
import { type FakeAws, startFakeAws } from '../../rehearsal/fake-aws/index';

const target = { stack: 'Volley-dev-Mta', resource: 'Sloteuwest1a1GroupASG362E5EEC', region: 'eu-west-1', instanceId: 'i-0signal000000001' };

describe('with a mocked client', () => {
  const cfn = mockClient(CloudFormationClient);
  afterEach(() => cfn.reset());
  afterAll(() => cfn.restore());

  it('sends SUCCESS or FAILURE for its own instance to the slot group', async () => {
    cfn.on(SignalResourceCommand).resolves({});
    const system = new LinuxSystem({ signal: target, cloudFormation: new CloudFormationClient({ region: 'eu-west-1' }) });
    await system.signal(true, 'ready');
    await system.signal(false, 'volume never appeared');
    expect(cfn.commandCalls(SignalResourceCommand).map((c) => c.args[0].input)).toEqual([
      { StackName: 'Volley-dev-Mta', LogicalResourceId: 'Sloteuwest1a1GroupASG362E5EEC', UniqueId: 'i-0signal000000001', Status: 'SUCCESS' },
      { StackName: 'Volley-dev-Mta', LogicalResourceId: 'Sloteuwest1a1GroupASG362E5EEC', UniqueId: 'i-0signal000000001', Status: 'FAILURE' },
    ]);
  });

  it('a refused signal is an ESIGNAL error naming the stack and resource', async () => {
    cfn.on(SignalResourceCommand).rejects(new Error('Signal already received'));
    const system = new LinuxSystem({ signal: target, cloudFormation: new CloudFormationClient({ region: 'eu-west-1' }) });
    await expect(system.signal(true, 'ready')).rejects.toMatchObject({ code: 'ESIGNAL', message: expect.stringContaining('Volley-dev-Mta/Sloteuwest1a1GroupASG362E5EEC: Signal already received') });
  });

  // A clock whose sleep only moves its now: minutes of backoff in no time, and the waits recorded.
  const fakeClock = () => {
    const clock = { t: 0, waits: [] as number[], now: () => clock.t, sleep: async (ms: number) => void (clock.waits.push(ms), (clock.t += ms)) };
    return clock;
  };
  const sdkError = (name: string, message: string, status: number) =>
    Object.assign(new Error(message), { name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } });
  const throttled = () => sdkError('Throttling', 'Rate exceeded', 400);

  it('a throttled signal (after the SDK\'s own retries) is tried again with backoff until it goes through: the boot succeeds', async () => {
    cfn.on(SignalResourceCommand).rejectsOnce(throttled()).rejectsOnce(throttled()).rejectsOnce(throttled()).resolves({});
    const clock = fakeClock();
    await new LinuxSystem({ signal: target, cloudFormation: new CloudFormationClient({ region: 'eu-west-1' }), clock }).signal(true, 'ready');
    expect({ calls: cfn.commandCalls(SignalResourceCommand).length, waits: clock.waits }).toEqual({ calls: 4, waits: [2000, 4000, 8000] });
  });

  test.each([
    ['credentials that could not be loaded', Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' })],
    ['a timeout', Object.assign(new Error('connect ETIMEDOUT 52.94.0.1:443'), { name: 'TimeoutError' })],
    ['a reset connection', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })],
    ['a 503', sdkError('ServiceUnavailableException', 'try later', 503)],
  ])('%s is tried again too', async (_what, err) => {
    cfn.on(SignalResourceCommand).rejectsOnce(err).resolves({});
    const clock = fakeClock();
    await new LinuxSystem({ signal: target, cloudFormation: new CloudFormationClient({ region: 'eu-west-1' }), clock }).signal(true, 'ready');
    expect(cfn.commandCalls(SignalResourceCommand)).toHaveLength(2);
  });

  it('a throttle that never clears fails (ESIGNAL) once the bound has passed, not before, saying how long it tried', async () => {
    cfn.on(SignalResourceCommand).rejects(throttled());
    const clock = fakeClock();
    await expect(new LinuxSystem({ signal: target, cloudFormation: new CloudFormationClient({ region: 'eu-west-1' }), clock }).signal(true, 'ready')).rejects.toMatchObject({
      code: 'ESIGNAL',
      message: expect.stringMatching(/\(\d+ attempts over 120 s\): Rate exceeded/),
    });
    expect(clock.t).toBe(SIGNAL_RETRY_BOUND_MS);
    expect(Math.max(...clock.waits)).toBeLessThanOrEqual(30_000);
    expect(cfn.commandCalls(SignalResourceCommand)).toHaveLength(clock.waits.length + 1);
  });

  test.each([
    ['AccessDenied', sdkError('AccessDenied', 'User is not authorized to perform: cloudformation:SignalResource', 403)],
    ['a stack that does not exist', sdkError('ValidationError', 'Stack [Volley-dev-Mta] does not exist', 400)],
  ])('%s fails (ESIGNAL) at once: no retry can pass it', async (_what, err) => {
    cfn.on(SignalResourceCommand).rejects(err);
    const clock = fakeClock();
    await expect(new LinuxSystem({ signal: target, cloudFormation: new CloudFormationClient({ region: 'eu-west-1' }), clock }).signal(true, 'ready')).rejects.toMatchObject({
      code: 'ESIGNAL',
      message: expect.stringContaining(err.message),
    });
    expect({ calls: cfn.commandCalls(SignalResourceCommand).length, waits: clock.waits }).toEqual({ calls: 1, waits: [] });
  });

  it('outside CloudFormation (no target) it sends nothing', async () => {
    await new LinuxSystem({ cloudFormation: new CloudFormationClient({ region: 'eu-west-1' }) }).signal(true, 'ready');
    expect(cfn.calls()).toHaveLength(0);
  });
});

describe('against the rehearsal\'s fake CloudFormation', () => {
  let aws: FakeAws;
  beforeAll(async () => {
    aws = await startFakeAws({ byIdDir: '/nonexistent/volley-signal-test/by-id', instance: { instanceId: target.instanceId, availabilityZone: 'eu-west-1a', region: 'eu-west-1', localIpv4: '10.0.1.10', roleName: 'volley-mta' } });
  });
  useEnv(() => ({ ...INSTANCE_LIKE_CREDENTIALS, ...aws.env }));
  afterAll(() => aws?.close());

  it('reaches AWS_ENDPOINT_URL_CLOUDFORMATION with the instance role\'s credentials', async () => {
    await new LinuxSystem({ signal: target }).signal(true, 'ready');
    expect(aws.cloudFormation.signals).toEqual([{ stack: target.stack, resource: target.resource, uniqueId: target.instanceId, status: 'SUCCESS' }]);
  });
});

// LinuxSystem.probe on files (blkid -p reads a file as it reads a device): what
// the bootstrap may format. blkid exits 2 both for "nothing found" and for a
// device it cannot read; a volume is blank if it reads as zeros, or holds no
// superblock at all, backups included (a format that never finished).
describe('probe', () => {
  const dir = tempDir('volley-probe-');

  it('a volume of zeros (a new EBS volume) is blank', async () => {
    const image = join(dir, 'zeros.img');
    writeFileSync(image, Buffer.alloc(4 * BLANK_CHECK_BYTES));
    await expect(new LinuxSystem().probe(image)).resolves.toEqual({ blank: true });
  });

  it('an ext4 whose primary superblock lost its magic is not blank: it names the backup superblock e2fsck -b repairs it from', async () => {
    // 64 MiB: mke2fs makes 1 KiB blocks (first backup at block 8193); 2 GiB: 4 KiB blocks (block 32768).
    for (const [size, backup] of [['64M', { block: 8193, blockSize: 1024 }], ['2G', { block: 32768, blockSize: 4096 }]] as const) {
      const image = join(dir, `torn-${size}.img`);
      execFileSync('truncate', ['-s', size, image]);
      execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', '-L', 'volley', image]);
      wipePrimaryMagic(image);
      expect(spawnSync('blkid', ['-p', image]).status).toBe(2);
      await expect(new LinuxSystem().probe(image)).resolves.toEqual({ blank: false, ext4Backup: backup });
      rmSync(image);
    }
  });

  it('a first mkfs that was interrupted (data in the first MiB, no superblock anywhere) is blank: formatted again, not refused for ever', async () => {
    for (const size of ['64M', '2G']) {
      const image = join(dir, `interrupted-${size}.img`);
      execFileSync('truncate', ['-s', size, image]);
      interruptedMkfs(image);
      expect(spawnSync('blkid', ['-p', image]).status).toBe(2);
      expect(leadingDataIn(image, BLANK_CHECK_BYTES)).toBe(true);
      await expect(new LinuxSystem().probe(image)).resolves.toEqual({ blank: true, unfinished: true });
      rmSync(image);
    }
  });

  it('a device that cannot be read is an EFILESYSTEM error, never blank', async () => {
    const missing = join(dir, 'gone');
    expect(spawnSync('blkid', ['-p', missing]).status).toBe(2);
    await expect(new LinuxSystem().probe(missing)).rejects.toMatchObject({ code: 'EFILESYSTEM', message: expect.stringContaining(`cannot read ${missing}`) });
  });
});
