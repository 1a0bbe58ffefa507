// LinuxSystem.signal: the bootstrap reports to CloudFormation with the SDK's
// SignalResource (this instance's id as UniqueId), so it goes wherever the
// SDK is pointed (AWS_ENDPOINT_URL_CLOUDFORMATION: the rehearsal's fake), with
// the role's credentials from instance metadata, and needs no cfn-signal. And
// LinuxSystem.probe: which volume counts as blank (the bootstrap formats only those).
import { CloudFormationClient, SignalResourceCommand } from '@aws-sdk/client-cloudformation';
import { mockClient } from 'aws-sdk-client-mock';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BLANK_CHECK_BYTES, LinuxSystem } from '../../../runtime/bootstrap/linux-system';
import { tempDir } from '../../helpers/tmp';
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

  it('credentials that could not be loaded (instance metadata slow or throttled) are tried again twice, 2 s then 5 s later; a third failure is ESIGNAL', async () => {
    const noCredentials = Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' });
    cfn.on(SignalResourceCommand).rejectsOnce(noCredentials).rejectsOnce(noCredentials).resolves({});
    const waits: number[] = [];
    const sleep = async (ms: number) => void waits.push(ms);
    await new LinuxSystem({ signal: target, cloudFormation: new CloudFormationClient({ region: 'eu-west-1' }), sleep }).signal(true, 'ready');
    expect({ calls: cfn.commandCalls(SignalResourceCommand).length, waits }).toEqual({ calls: 3, waits: [2000, 5000] });

    cfn.reset();
    cfn.on(SignalResourceCommand).rejects(noCredentials);
    await expect(new LinuxSystem({ signal: target, cloudFormation: new CloudFormationClient({ region: 'eu-west-1' }), sleep }).signal(true, 'ready')).rejects.toMatchObject({ code: 'ESIGNAL' });
    expect(cfn.commandCalls(SignalResourceCommand)).toHaveLength(3);
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
// device it cannot read; only zeros make a volume blank.
describe('probe', () => {
  const dir = tempDir('volley-probe-');

  it('a volume of zeros (a new EBS volume) is blank', async () => {
    const image = join(dir, 'zeros.img');
    writeFileSync(image, Buffer.alloc(4 * BLANK_CHECK_BYTES));
    await expect(new LinuxSystem().probe(image)).resolves.toEqual({ blank: true });
  });

  it('data without a filesystem signature is not blank (nothing to format)', async () => {
    const image = join(dir, 'data.img');
    const bytes = Buffer.alloc(4 * BLANK_CHECK_BYTES);
    bytes.write('group descriptors of a filesystem whose superblock was torn', 4096);
    writeFileSync(image, bytes);
    expect(spawnSync('blkid', ['-p', image]).status).toBe(2);
    await expect(new LinuxSystem().probe(image)).resolves.toEqual({ blank: false });
  });

  it('a device that cannot be read is an EFILESYSTEM error, never blank', async () => {
    const missing = join(dir, 'gone');
    expect(spawnSync('blkid', ['-p', missing]).status).toBe(2);
    await expect(new LinuxSystem().probe(missing)).rejects.toMatchObject({ code: 'EFILESYSTEM', message: expect.stringContaining(`cannot read ${missing}`) });
  });
});
