import { AttachNetworkInterfaceCommand, DescribeNetworkInterfacesCommand, EC2Client, NetworkInterface } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootstrapProxy, PROXY_DEFAULTS, type ProxyBootstrapOptions } from '../../../runtime/bootstrap';
import { parseProxyConfig } from '../../../runtime/proxy/config';
import { ProxyDaemon } from '../../../runtime/proxy/daemon';
import { bindProbe } from '../../../runtime/proxy/readiness';
import { getFreePort } from '../../helpers/postfix-tools';
import { captureLogger, newSecret, proxyTls } from '../../helpers/proxy-fixtures';
import { tempDir } from '../../helpers/tmp';
import { MemoryLog, RecordingSystem, startReadyServer, VirtualClock, type ReadyServer } from './fakes';

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
let ready: ReadyServer;
const dir = tempDir('volley-bootstrap-proxy-');

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

const run = (options: Partial<ProxyBootstrapOptions> = {}): Promise<void> =>
  bootstrapProxy(
    { ec2: new EC2Client({ region: 'us-east-1' }), system, clock, log: new MemoryLog(), identity: async () => ({ instanceId: SELF, availabilityZone: AZ, region: 'us-east-1' }) },
    { ...PROXY_DEFAULTS, slot: SLOT, readyUrl: ready.url, ...options },
  );

afterEach(() => ready.close());

beforeEach(async () => {
  ready = await startReadyServer(200);
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

test('reboot or replacement outside a deploy: CloudFormation refuses the ready signal, and the serving proxy is kept, not failed', async () => {
  states = [eni('available')];
  system.refuseSignals = 'cannot signal Volley-dev-Proxy/SlotGroup: Stack arn:aws:cloudformation:eu-west-1:111111111111:stack/Volley-dev-Proxy/x is in UPDATE_COMPLETE state and cannot be signaled';
  await run();
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

test('the default readiness URL is the proxy\'s own /readyz on its default admin_listen', () => {
  const { adminListen } = parseProxyConfig('listen: 10.0.0.7:7625\ntls: { cert: a.crt, key: a.key }\nsending_ips: [10.60.0.10]\n', '/etc/volley/proxy.yaml');
  expect(PROXY_DEFAULTS.readyUrl).toBe(`http://${adminListen.address}:${adminListen.port}/readyz`);
});

describe('against a real proxy daemon\'s admin port', () => {
  let daemon: ProxyDaemon;
  let started: Promise<unknown> | undefined;
  let readyUrl: string;
  let probes = 0;
  let bindableAfter = Infinity;

  beforeEach(async () => {
    await proxyTls(dir);
    writeFileSync(join(dir, 'proxy.secret'), newSecret(), { mode: 0o600 });
    const admin = await getFreePort();
    readyUrl = `http://127.0.0.1:${admin}/readyz`;
    const file = join(dir, 'proxy.yaml');
    writeFileSync(file, `listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:${admin}\ntls: { cert: proxy.crt, key: proxy.key }\nsecret_file: proxy.secret\nsending_ips: [127.0.0.2, 127.0.0.3]\n`);
    probes = 0;
    // 127.0.0.3 "comes up" on the host only after some probes (as an address
    // configured late would); 127.0.0.2 is probed for real.
    daemon = new ProxyDaemon({ configFile: file, logger: () => captureLogger().logger, probe: async (ip) => (ip === '127.0.0.3' ? ++probes > bindableAfter : bindProbe(ip)) });
    // The unit starting is the daemon starting: /readyz refuses connections until then.
    started = undefined;
    system.onStartUnit = () => {
      started = daemon.start();
    };
    states = [eni('available')];
  });

  afterEach(async () => {
    await started;
    await daemon.stop();
  });

  test('waits until the proxy can bind every sending IP before signalling success', async () => {
    bindableAfter = 3;
    await run({ readyUrl });
    expect(probes).toBe(4);
    expect(system.calls).toEqual(['start volley-proxy.service', 'signal true']);
  });

  test('a proxy that never gets ready: ENOTREADY naming the missing IP, and failure signalled', async () => {
    bindableAfter = Infinity;
    await expect(run({ readyUrl })).rejects.toMatchObject({ code: 'ENOTREADY', message: expect.stringContaining('sending IP 127.0.0.3 cannot be bound on this host') });
    expect(system.calls).toEqual(['start volley-proxy.service', 'signal false']);
  });
});
