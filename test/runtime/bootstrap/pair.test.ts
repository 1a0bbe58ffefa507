// Boot of a node of an HA pair: the volume as any MTA slot's, then the
// node's mirror interface (attached second, its fixed IP awaited on the
// host), then the mirror; the MTA only when the mirror says this node is the
// primary. EC2 is mocked; the mirror is a real MirrorDaemon with its admin
// port on loopback (its /healthz and /status as the bootstrap reads them),
// holding the durable state the node's volume would.
import { AttachNetworkInterfaceCommand, AttachVolumeCommand, DescribeNetworkInterfacesCommand, DescribeVolumesCommand, EC2Client, type NetworkInterface, type Volume } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootstrapMtaPair, MTA_DEFAULTS, nvmeDevicePath, PAIR_DEFAULTS, type PairBootstrapOptions } from '../../../runtime/bootstrap';
import { startMirrorAdmin } from '../../../runtime/mirror/admin';
import { parseMirrorConfig } from '../../../runtime/mirror/config';
import { MirrorDaemon } from '../../../runtime/mirror/daemon';
import { writeState } from '../../../runtime/mirror/state';
import { getFreePort } from '../../helpers/postfix-tools';
import { captureLogger, newSecret, proxyTls, type ProxyTls } from '../../helpers/proxy-fixtures';
import { tempDir } from '../../helpers/tmp';
import { MemoryLog, RecordingSystem, startReadyServer, VirtualClock, type ReadyServer } from './fakes';

const MEMBER = 'staging-mta-eu-west-1a-1-b';
const AZ = 'eu-west-1b';
const SELF = 'i-0pairnew0000000001';
const VOLUME = 'vol-0aaaabbbbccccdddd';
const DEVICE = '/dev/nvme1n1';
const ENI = 'eni-0mirror000000001';
const MIRROR_IP = '10.50.32.5';

const ec2Mock = mockClient(EC2Client);
const base = tempDir('volley-bootstrap-pair-');
let tls: ProxyTls;
let secretFile: string;
let system: RecordingSystem;
let clock: VirtualClock;
let ready: ReadyServer;
const running: { stop(): Promise<void> }[] = [];

beforeAll(async () => {
  tls = await proxyTls(base);
  secretFile = join(base, 'mirror.secret');
  writeFileSync(secretFile, newSecret());
});

beforeEach(async () => {
  ec2Mock.reset();
  system = new RecordingSystem();
  system.addresses = ['10.50.33.17']; // the instance's own address only, until the mirror interface is up
  clock = new VirtualClock();
  ready = await startReadyServer(200);
  let volumeReads = 0;
  let volumeStates: Volume[] = [{ VolumeId: VOLUME, AvailabilityZone: AZ, State: 'available', Attachments: [] }];
  ec2Mock.on(DescribeVolumesCommand).callsFake((input) => {
    if (input.Filters) {
      const f = Object.fromEntries(input.Filters.map((x: { Name: string; Values: string[] }) => [x.Name, x.Values[0]]));
      return { Volumes: f['tag:volley:slot'] === MEMBER && f['availability-zone'] === AZ ? [volumeStates[0]] : [] };
    }
    return { Volumes: [volumeStates[Math.min(volumeReads++, volumeStates.length - 1)]] };
  });
  ec2Mock.on(AttachVolumeCommand).callsFake(() => {
    system.devices.set(nvmeDevicePath(VOLUME), DEVICE);
    volumeStates = [{ VolumeId: VOLUME, AvailabilityZone: AZ, State: 'in-use', Attachments: [{ InstanceId: SELF, State: 'attached', VolumeId: VOLUME }] }];
    volumeReads = 0;
    return {};
  });
  let eni: NetworkInterface = { NetworkInterfaceId: ENI, Status: 'available', AvailabilityZone: AZ, PrivateIpAddresses: [{ PrivateIpAddress: MIRROR_IP, Primary: true }] };
  ec2Mock.on(DescribeNetworkInterfacesCommand).callsFake((input) => {
    if (input.Filters) {
      const f = Object.fromEntries(input.Filters.map((x: { Name: string; Values: string[] }) => [x.Name, x.Values[0]]));
      return { NetworkInterfaces: f['tag:volley:slot'] === MEMBER && f['availability-zone'] === AZ ? [eni] : [] };
    }
    return { NetworkInterfaces: [eni] };
  });
  ec2Mock.on(AttachNetworkInterfaceCommand).callsFake(() => {
    eni = { ...eni, Status: 'in-use', Attachment: { InstanceId: SELF, Status: 'attached', DeviceIndex: 1 } };
    system.addresses = ['10.50.33.17', MIRROR_IP]; // amazon-ec2-net-utils configures it
    return { AttachmentId: 'eni-attach-1' };
  });
});

afterEach(async () => {
  await ready.close();
  for (const r of running.splice(0)) await r.stop();
});

/** The node's mirror, up with `role` in its durable state (undefined: a volume that never ran one), its admin URL. */
async function mirror(role?: 'primary' | 'secondary'): Promise<string> {
  const root = mkdtempSync(join(base, 'node-'));
  if (role) writeState(root, { role, epoch: 3, caughtUp: role === 'secondary' });
  const config = parseMirrorConfig(
    `persistent_path: ${root}\nlisten: 127.0.0.1:0\npeer: 127.0.0.1:${await getFreePort()}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\npeer_fingerprint: "${tls.fingerprint}"\nsecret_file: ${secretFile}\nadmin_listen: 127.0.0.1:0\nreconnect_interval: 1h\n`,
    join(root, 'mirror.yaml'),
  );
  const daemon = new MirrorDaemon(config, captureLogger().logger);
  await daemon.start();
  const admin = await startMirrorAdmin(daemon);
  running.push({ stop: async () => void (await Promise.all([daemon.stop(), admin.close()])) });
  return `http://127.0.0.1:${admin.port}`;
}

const run = (adminUrl: string, overrides: Partial<PairBootstrapOptions> = {}): Promise<void> =>
  bootstrapMtaPair(
    { ec2: new EC2Client({ region: 'eu-west-1' }), system, clock, log: new MemoryLog(), identity: async () => ({ instanceId: SELF, availabilityZone: AZ, region: 'eu-west-1' }) },
    { ...MTA_DEFAULTS, ...PAIR_DEFAULTS, slot: MEMBER, persistentPath: '/var/lib/volley', readyUrl: ready.url, mirrorAdminUrl: adminUrl, ...overrides },
  );

test('the primary: mounts its own volume, attaches its mirror interface second, starts the mirror, then the MTA, and is ready once the MTA is', async () => {
  await run(await mirror('primary'));
  expect(ec2Mock.commandCalls(AttachVolumeCommand)[0]?.args[0].input).toMatchObject({ VolumeId: VOLUME, InstanceId: SELF });
  expect(ec2Mock.commandCalls(AttachNetworkInterfaceCommand)[0]?.args[0].input).toEqual({ NetworkInterfaceId: ENI, InstanceId: SELF, DeviceIndex: 1 });
  expect(system.calls).toEqual([`probe ${DEVICE}`, `mkfs ${DEVICE} volley`, `mount ${DEVICE} /var/lib/volley`, 'start volley-mirror.service', 'start volley-mta.service', 'signal true']);
});

test('the secondary (and a node whose volume never ran a mirror): the mirror only, no MTA, and ready for CloudFormation', async () => {
  await run(await mirror('secondary'));
  expect(system.calls).toEqual([`probe ${DEVICE}`, `mkfs ${DEVICE} volley`, `mount ${DEVICE} /var/lib/volley`, 'start volley-mirror.service', 'signal true']);
  system.calls.length = 0;
  await run(await mirror(undefined));
  expect(system.calls.filter((c) => c.startsWith('start') || c.startsWith('signal'))).toEqual(['start volley-mirror.service', 'signal true']);
});

test('reboot or replacement outside a deploy: CloudFormation refuses the ready signal, and the serving primary is kept, not failed', async () => {
  system.refuseSignals = 'cannot signal Volley-dev-Mta/SlotGroup: Stack arn:aws:cloudformation:eu-west-1:111111111111:stack/Volley-dev-Mta/x is in UPDATE_COMPLETE state and cannot be signaled';
  await run(await mirror('primary'));
  expect(system.calls.slice(-3)).toEqual(['start volley-mirror.service', 'start volley-mta.service', 'signal true']);
});

test('a primary whose MTA never gets ready fails the boot (the group replaces the instance)', async () => {
  ready.status = 503;
  await expect(run(await mirror('primary'), { readyTimeoutMs: 60_000 })).rejects.toMatchObject({ code: 'ENOTREADY' });
  expect(system.calls.slice(-3)).toEqual(['start volley-mirror.service', 'start volley-mta.service', 'signal false']);
});

test('a mirror that never answers fails the boot without starting the MTA', async () => {
  const silent = `http://127.0.0.1:${await getFreePort()}`;
  await expect(run(silent, { mirrorTimeoutMs: 20_000 })).rejects.toMatchObject({ code: 'ENOTREADY' });
  expect(system.calls.slice(-2)).toEqual(['start volley-mirror.service', 'signal false']);
});

test('the mirror interface\'s address never comes up: fails before starting anything', async () => {
  ec2Mock.on(AttachNetworkInterfaceCommand).callsFake(() => ({ AttachmentId: 'x' }));
  ec2Mock.on(DescribeNetworkInterfacesCommand).callsFake(() => ({
    NetworkInterfaces: [{ NetworkInterfaceId: ENI, Status: 'in-use', AvailabilityZone: AZ, PrivateIpAddresses: [{ PrivateIpAddress: MIRROR_IP }], Attachment: { InstanceId: SELF, Status: 'attached' } }],
  }));
  await expect(run(await mirror('primary'), { addressTimeoutMs: 30_000 })).rejects.toMatchObject({ code: 'ETIMEOUT' });
  expect(system.calls.filter((c) => c.startsWith('start'))).toEqual([]);
});
