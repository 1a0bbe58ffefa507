import { AttachVolumeCommand, DescribeVolumesCommand, DescribeVolumesCommandInput, EC2Client, Volume } from '@aws-sdk/client-ec2';
import { CloudFormationClient, SignalResourceCommand } from '@aws-sdk/client-cloudformation';
import { mockClient } from 'aws-sdk-client-mock';
import { bootstrapMta, BootstrapError, LinuxSystem, MTA_DEFAULTS, MtaBootstrapOptions, nvmeDevicePath } from '../../../runtime/bootstrap';
import { signalReady } from '../../../runtime/bootstrap/mta';
import { MemoryLog, ReadyServer, RecordingSystem, startReadyServer, VirtualClock } from './fakes';

const SLOT = 'dev-mta-eu-west-1a-1';
const AZ = 'eu-west-1a';
const SELF = 'i-0new00000000000001';
const OLD = 'i-0old00000000000001';
const VOLUME = 'vol-0123456789abcdef0';
const DEVICE = '/dev/nvme1n1';

const ec2Mock = mockClient(EC2Client);

interface World {
  system: RecordingSystem;
  clock: VirtualClock;
  log: MemoryLog;
  ready: ReadyServer;
  /** States the volume goes through when described by id, one per call; the last repeats. */
  volumeStates: Volume[];
  describesBeforeAttach: number;
}

let world: World;

function volume(state: Volume['State'], attachment?: { instance: string; state: 'attaching' | 'attached' | 'detaching' }): Volume {
  return {
    VolumeId: VOLUME,
    AvailabilityZone: AZ,
    State: state,
    Attachments: attachment ? [{ InstanceId: attachment.instance, State: attachment.state, VolumeId: VOLUME }] : [],
  };
}

function tagged(count: number): Volume[] {
  return Array.from({ length: count }, (_, i) => ({ ...volume('available'), VolumeId: `vol-0${i}23456789abcdef0` }));
}

function describeHandler(slotVolumes: Volume[]) {
  let byIdCalls = 0;
  return (input: DescribeVolumesCommandInput) => {
    if (input.Filters) {
      const filters = Object.fromEntries(input.Filters.map((f) => [f.Name, f.Values]));
      // Only the slot's tag in this AZ finds anything: a wrong filter finds nothing.
      const matches = filters['tag:volley:slot']?.[0] === SLOT && filters['availability-zone']?.[0] === AZ;
      return { Volumes: matches ? slotVolumes : [] };
    }
    const states = world.volumeStates;
    const current = states[Math.min(byIdCalls, states.length - 1)] as Volume;
    byIdCalls++;
    return { Volumes: [current] };
  };
}

async function run(overrides: Partial<MtaBootstrapOptions> = {}): Promise<void> {
  await bootstrapMta(
    {
      ec2: new EC2Client({ region: 'eu-west-1' }),
      system: world.system,
      clock: world.clock,
      log: world.log,
      identity: async () => ({ instanceId: SELF, availabilityZone: AZ, region: 'eu-west-1' }),
    },
    {
      ...MTA_DEFAULTS,
      slot: SLOT,
      persistentPath: '/var/lib/volley',
      readyUrl: world.ready.url,
      ...overrides,
    },
  );
}

beforeEach(async () => {
  ec2Mock.reset();
  world = {
    system: new RecordingSystem(),
    clock: new VirtualClock(),
    log: new MemoryLog(),
    ready: await startReadyServer(200),
    volumeStates: [],
    describesBeforeAttach: -1,
  };
  ec2Mock.on(DescribeVolumesCommand).callsFake(describeHandler([volume('available')]));
  // Attaching makes the device appear under its stable NVMe name, as udev would, and the volume report attached.
  ec2Mock.on(AttachVolumeCommand).callsFake(() => {
    world.describesBeforeAttach = ec2Mock.commandCalls(DescribeVolumesCommand).length;
    world.system.devices.set(nvmeDevicePath(VOLUME), DEVICE);
    world.volumeStates = [volume('in-use', { instance: SELF, state: 'attaching' }), volume('in-use', { instance: SELF, state: 'attached' })];
    return { State: 'attaching' };
  });
});

afterEach(async () => {
  await world.ready.close();
});

describe('MTA bootstrap', () => {
  test('happy path: finds the volume by tag in its AZ, attaches, formats the blank volume, mounts, starts, signals success', async () => {
    world.volumeStates = [volume('available')];
    await run();

    const attach = ec2Mock.commandCalls(AttachVolumeCommand);
    expect(attach).toHaveLength(1);
    expect(attach[0]?.args[0].input).toMatchObject({ VolumeId: VOLUME, InstanceId: SELF });
    expect(world.system.calls).toEqual([
      `probe ${DEVICE}`,
      `mkfs ${DEVICE} volley`,
      `mount ${DEVICE} /var/lib/volley`,
      'start volley-mta.service',
      'signal true',
    ]);
  });

  test('volume still attached to the old instance: waits until EC2 frees it, then attaches', async () => {
    world.volumeStates = [
      volume('in-use', { instance: OLD, state: 'attached' }),
      volume('in-use', { instance: OLD, state: 'attached' }),
      volume('in-use', { instance: OLD, state: 'detaching' }),
      volume('available'),
    ];
    world.system.probeResult = { blank: false, type: 'ext4' };
    await run();

    // 1 lookup by tag + 4 state reads before the attach: it did not attach while the old instance held the volume.
    expect(world.describesBeforeAttach).toBe(5);
    expect(world.clock.slept).toBeGreaterThanOrEqual(15_000);
    expect(world.log.lines.some((l) => l.includes(`attached to ${OLD}`))).toBe(true);
    // The spool on it is kept.
    expect(world.system.calls).toEqual([`probe ${DEVICE}`, `mount ${DEVICE} /var/lib/volley`, 'start volley-mta.service', 'signal true']);
  });

  test('old instance never lets go: fails with a timeout, signals failure, touches nothing', async () => {
    world.volumeStates = [volume('in-use', { instance: OLD, state: 'attached' })];
    await expect(run({ releaseTimeoutMs: 60_000 })).rejects.toMatchObject({ code: 'ETIMEOUT' });
    expect(ec2Mock.commandCalls(AttachVolumeCommand)).toHaveLength(0);
    expect(world.system.calls).toEqual(['signal false']);
  });

  test('no volume tagged for the slot in this AZ: fails ENOVOLUME without attaching or starting', async () => {
    ec2Mock.on(DescribeVolumesCommand).callsFake(describeHandler([]));
    const failure = run();
    await expect(failure).rejects.toBeInstanceOf(BootstrapError);
    await expect(failure).rejects.toMatchObject({ code: 'ENOVOLUME' });
    expect(ec2Mock.commandCalls(AttachVolumeCommand)).toHaveLength(0);
    expect(world.system.calls).toEqual(['signal false']);
  });

  test('two volumes tagged for the slot: fails EMANYVOLUMES rather than guess', async () => {
    ec2Mock.on(DescribeVolumesCommand).callsFake(describeHandler(tagged(2)));
    await expect(run()).rejects.toMatchObject({ code: 'EMANYVOLUMES', message: expect.stringContaining('vol-0023456789abcdef0, vol-0123456789abcdef0') });
    expect(ec2Mock.commandCalls(AttachVolumeCommand)).toHaveLength(0);
    expect(world.system.calls).toEqual(['signal false']);
  });

  test('attach that never completes: fails with a timeout after the attach timeout, never mounts or starts', async () => {
    world.volumeStates = [volume('available')];
    ec2Mock.on(AttachVolumeCommand).callsFake(() => {
      world.volumeStates = [volume('in-use', { instance: SELF, state: 'attaching' })];
      return { State: 'attaching' };
    });
    await expect(run({ attachTimeoutMs: 90_000 })).rejects.toMatchObject({ code: 'ETIMEOUT', message: expect.stringContaining(`${VOLUME} to attach`) });
    expect(world.clock.slept).toBeGreaterThanOrEqual(90_000);
    expect(world.clock.slept).toBeLessThan(100_000);
    expect(world.system.calls).toEqual(['signal false']);
  });

  test('attached but the device never shows up: fails with a timeout', async () => {
    world.volumeStates = [volume('available')];
    ec2Mock.on(AttachVolumeCommand).callsFake(() => {
      world.volumeStates = [volume('in-use', { instance: SELF, state: 'attached' })];
      return { State: 'attaching' };
    });
    await expect(run()).rejects.toMatchObject({ code: 'ETIMEOUT', message: expect.stringContaining('nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0') });
    expect(world.system.calls).toEqual(['signal false']);
  });

  test('reboot: the volume is already attached here, so no attach; an existing filesystem is never formatted', async () => {
    world.volumeStates = [volume('in-use', { instance: SELF, state: 'attached' })];
    world.system.devices.set(nvmeDevicePath(VOLUME), DEVICE);
    world.system.probeResult = { blank: false, type: 'ext4' };
    await run();
    expect(ec2Mock.commandCalls(AttachVolumeCommand)).toHaveLength(0);
    expect(world.system.calls.some((c) => c.startsWith('mkfs'))).toBe(false);
    expect(world.system.calls).toContain('signal true');
  });

  test('a volume with a partition table but no filesystem is refused, not formatted', async () => {
    world.volumeStates = [volume('available')];
    world.system.probeResult = { blank: false, partitionTable: 'gpt' };
    await expect(run()).rejects.toMatchObject({ code: 'EFILESYSTEM' });
    expect(world.system.calls).toEqual([`probe ${DEVICE}`, 'signal false']);
  });

  // CloudFormation waits for a signal only while it creates or updates the slot's group. At every other boot (a
  // reboot, an instance the group replaced after a failed health check) it refuses one: a boot failed for that
  // powered a serving instance off (FailureAction), and the group's next instance the same way, for ever.
  test('reboot or replacement outside a deploy: CloudFormation refuses the ready signal, and the serving MTA is kept, not failed', async () => {
    world.volumeStates = [volume('available')];
    world.system.refuseSignals = 'cannot signal Volley-dev-Mta/SlotGroup: Stack arn:aws:cloudformation:eu-west-1:111111111111:stack/Volley-dev-Mta/x is in UPDATE_COMPLETE state and cannot be signaled';
    await run();
    expect(world.system.calls.slice(-2)).toEqual(['start volley-mta.service', 'signal true']);
    expect(world.log.lines).toContainEqual(expect.stringMatching(/^error: .*cannot be signaled/));
  });

  test('a ready signal that fails otherwise (throttled, AccessDenied, no credentials, a timeout) fails the boot: a deploy may be waiting for it', async () => {
    world.volumeStates = [volume('available')];
    world.system.failSignals = 'cannot signal Volley-dev-Mta/SlotGroup: Rate exceeded';
    await expect(run()).rejects.toMatchObject({ code: 'ESIGNAL', message: expect.stringContaining('Rate exceeded') });
    expect(world.system.calls.slice(-3)).toEqual(['start volley-mta.service', 'signal true', 'signal false']);
  });

  test('MTA never reports ready: fails ENOTREADY and signals failure', async () => {
    world.volumeStates = [volume('available')];
    world.ready.status = 503;
    await expect(run({ readyTimeoutMs: 30_000 })).rejects.toMatchObject({ code: 'ENOTREADY' });
    expect(world.system.calls.slice(-2)).toEqual(['start volley-mta.service', 'signal false']);
  });
});

// signalReady with the real LinuxSystem and the SDK's errors as CloudFormation and the SDK raise them: only
// CloudFormation's "cannot be signaled" (a ValidationError, outside a create or update) is let go.
describe('signalReady', () => {
  const cfn = mockClient(CloudFormationClient);
  afterEach(() => cfn.reset());
  afterAll(() => cfn.restore());
  const target = { stack: 'Volley-prod-Mta', resource: 'SlotGroup', region: 'eu-west-1', instanceId: 'i-1' };
  // A clock whose sleep only moves its now: the signal's two minutes of retries pass at once.
  const system = () => {
    let t = 0;
    return new LinuxSystem({ signal: target, cloudFormation: new CloudFormationClient({ region: 'eu-west-1' }), clock: { now: () => t, sleep: async (ms) => void (t += ms) } });
  };
  const failure = (name: string, message: string) => Object.assign(new Error(message), { name });

  test.each([
    ['CredentialsProviderError', 'Could not load credentials from any providers'],
    ['ThrottlingException', 'Rate exceeded'],
    ['AccessDenied', 'User is not authorized to perform: cloudformation:SignalResource'],
    ['TimeoutError', 'connect ETIMEDOUT 52.94.0.1:443'],
    ['ValidationError', 'Stack [Volley-prod-Mta] does not exist'],
  ])('a signal that fails with %s (for good, or for longer than the retry bound) fails the boot (ESIGNAL)', async (name, message) => {
    cfn.on(SignalResourceCommand).rejects(failure(name, message));
    const log = new MemoryLog();
    await expect(signalReady(system(), log, 'slot a ready')).rejects.toMatchObject({ code: 'ESIGNAL', message: expect.stringContaining(message) });
    expect(log.lines).toEqual([]);
  });

  it('a throttle that clears after a few tries is a ready signal sent: the boot goes on, nothing logged', async () => {
    const throttled = () => Object.assign(failure('Throttling', 'Rate exceeded'), { $fault: 'client', $metadata: { httpStatusCode: 400 } });
    cfn.on(SignalResourceCommand).rejectsOnce(throttled()).rejectsOnce(throttled()).resolves({});
    const log = new MemoryLog();
    await signalReady(system(), log, 'slot a ready');
    expect({ calls: cfn.commandCalls(SignalResourceCommand).map((c) => c.args[0].input.Status), log: log.lines }).toEqual({ calls: ['SUCCESS', 'SUCCESS', 'SUCCESS'], log: [] });
  });

  test.each([
    'Stack arn:aws:cloudformation:eu-west-1:111111111111:stack/Volley-prod-Mta/x is in UPDATE_COMPLETE state and cannot be signaled',
    'Resource SlotGroup is in CREATE_COMPLETE state and cannot be signaled',
  ])('CloudFormation waiting for no signal (%s) is logged, and the boot goes on', async (message) => {
    cfn.on(SignalResourceCommand).rejects(failure('ValidationError', message));
    const log = new MemoryLog();
    await signalReady(system(), log, 'slot a ready');
    expect(log.lines).toEqual([expect.stringMatching(/^error: slot a ready, but CloudFormation did not take the signal .*cannot be signaled/)]);
  });
});
