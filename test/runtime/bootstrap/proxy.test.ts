import { AttachNetworkInterfaceCommand, DescribeNetworkInterfacesCommand, EC2Client, NetworkInterface } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { bootstrapProxy, PROXY_DEFAULTS } from '../../../runtime/bootstrap';
import { MemoryLog, RecordingSystem, VirtualClock } from './fakes';

const SLOT = 'prod-proxy-a1';
const AZ = 'us-east-1a';
const SELF = 'i-0proxynew00000001';
const OLD = 'i-0proxyold00000001';
const ENI = 'eni-0abc0000000000001';
const IPS = ['10.60.0.10', '10.60.0.11', '10.60.0.12'];

const ec2Mock = mockClient(EC2Client);
let system: RecordingSystem;
let clock: VirtualClock;
let states: NetworkInterface[];
let reads: number;

function eni(status: NetworkInterface['Status'], attachedTo?: string, attachStatus: 'attached' | 'attaching' | 'detaching' = 'attached'): NetworkInterface {
  return {
    NetworkInterfaceId: ENI,
    Status: status,
    AvailabilityZone: AZ,
    PrivateIpAddresses: IPS.map((ip, i) => ({ PrivateIpAddress: ip, Primary: i === 0 })),
    Attachment: attachedTo ? { InstanceId: attachedTo, Status: attachStatus, DeviceIndex: 1 } : undefined,
  };
}

function found(list: NetworkInterface[]): void {
  ec2Mock.on(DescribeNetworkInterfacesCommand).callsFake((input) => {
    if (input.Filters) {
      const filters = Object.fromEntries(input.Filters.map((f: { Name: string; Values: string[] }) => [f.Name, f.Values[0]]));
      return { NetworkInterfaces: filters['tag:volley:slot'] === SLOT && filters['availability-zone'] === AZ ? list : [] };
    }
    return { NetworkInterfaces: [states[Math.min(reads++, states.length - 1)]] };
  });
}

const run = (): Promise<void> =>
  bootstrapProxy(
    { ec2: new EC2Client({ region: 'us-east-1' }), system, clock, log: new MemoryLog(), identity: async () => ({ instanceId: SELF, availabilityZone: AZ, region: 'us-east-1' }) },
    { ...PROXY_DEFAULTS, slot: SLOT },
  );

beforeEach(() => {
  ec2Mock.reset();
  system = new RecordingSystem();
  system.addresses = ['10.60.16.7']; // only the instance's own address until the ENI is up
  clock = new VirtualClock();
  reads = 0;
  found([eni('available')]);
  ec2Mock.on(AttachNetworkInterfaceCommand).callsFake(() => {
    states = [eni('in-use', SELF, 'attaching'), eni('in-use', SELF)];
    reads = 0;
    system.addresses = ['10.60.16.7', ...IPS]; // amazon-ec2-net-utils brings the addresses up
    return { AttachmentId: 'eni-attach-1' };
  });
});

test('reattaches the sending ENI as the second interface, waits for its addresses, starts the proxy', async () => {
  states = [eni('available')];
  await run();
  const attach = ec2Mock.commandCalls(AttachNetworkInterfaceCommand);
  expect(attach).toHaveLength(1);
  expect(attach[0]?.args[0].input).toEqual({ NetworkInterfaceId: ENI, InstanceId: SELF, DeviceIndex: 1 });
  expect(system.calls).toEqual(['start volley-proxy.service', 'signal true']);
});

test('ENI still attached to the old proxy: waits for it to be released first', async () => {
  states = [eni('in-use', OLD), eni('in-use', OLD, 'detaching'), eni('available')];
  await run();
  expect(ec2Mock.commandCalls(AttachNetworkInterfaceCommand)).toHaveLength(1);
  expect(clock.slept).toBeGreaterThanOrEqual(10_000);
  expect(system.calls).toEqual(['start volley-proxy.service', 'signal true']);
});

test('addresses never come up on the host: times out before starting the proxy', async () => {
  states = [eni('available')];
  ec2Mock.on(AttachNetworkInterfaceCommand).callsFake(() => {
    states = [eni('in-use', SELF)];
    reads = 0;
    return { AttachmentId: 'eni-attach-1' };
  });
  await expect(run()).rejects.toMatchObject({ code: 'ETIMEOUT', message: expect.stringContaining('10.60.0.11') });
  expect(system.calls).toEqual(['signal false']);
});

test('no ENI for the slot, or two: fails without attaching', async () => {
  found([]);
  await expect(run()).rejects.toMatchObject({ code: 'ENOINTERFACE' });
  found([eni('available'), { ...eni('available'), NetworkInterfaceId: 'eni-0abc0000000000002' }]);
  await expect(run()).rejects.toMatchObject({ code: 'EMANYINTERFACES' });
  expect(ec2Mock.commandCalls(AttachNetworkInterfaceCommand)).toHaveLength(0);
  expect(system.calls).toEqual(['signal false', 'signal false']);
});
