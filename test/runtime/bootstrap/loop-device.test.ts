// The mount-and-start sequence on a real block device: a loop device stands in
// for the EBS volume, a symlink for udev's stable NVMe name. blkid, mkfs.ext4,
// findmnt and mount run for real (root is needed); only EC2 and systemd are faked.
// A volume blkid finds nothing on is formatted only if it holds no ext4
// superblock at all, backups included (zeros, or a first mkfs interrupted).
import { AttachVolumeCommand, DescribeVolumesCommand, EC2Client, Volume } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootstrapMta, LinuxSystem, MTA_DEFAULTS, nvmeDevicePath } from '../../../runtime/bootstrap';
import { BLANK_CHECK_BYTES } from '../../../runtime/bootstrap/linux-system';
import { interruptedMkfs, leadingDataIn, restorePrimaryMagic, wipePrimaryMagic } from './ext4-images';
import { MemoryLog, ReadyServer, startReadyServer, VirtualClock } from './fakes';

const SLOT = 'dev-mta-eu-west-1a-1';
const AZ = 'eu-west-1a';
const SELF = 'i-0loop0000000000001';
const VOLUME = 'vol-0feedface0000beef';

/** The real host, except that starting the unit and signalling are recorded instead. */
class LoopSystem extends LinuxSystem {
  readonly events: string[] = [];
  constructor(private readonly mountPoint: string) {
    super();
  }
  override async makeFilesystem(device: string, label: string): Promise<void> {
    this.events.push('mkfs');
    await super.makeFilesystem(device, label);
  }
  override async startUnit(unit: string): Promise<void> {
    // What the MTA would do first: write into its persistent path.
    writeFileSync(join(this.mountPoint, 'started-by'), unit);
    this.events.push(`start ${unit}`);
  }
  override async signal(success: boolean): Promise<void> {
    this.events.push(`signal ${success}`);
  }
}

const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' }).trim();

const ec2Mock = mockClient(EC2Client);
let dir: string;
let loop: string;
let byId: string;
let mountPoint: string;
let ready: ReadyServer;
let volumeState: Volume;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'volley-loop-'));
  const image = join(dir, 'volume.img');
  execFileSync('truncate', ['-s', '64M', image]);
  loop = sh('losetup', ['--find', '--show', image]);
  byId = join(dir, 'by-id');
  mkdirSync(byId);
  mountPoint = join(dir, 'var-lib-volley');
  ready = await startReadyServer(200);
});

afterAll(async () => {
  await ready.close();
  try {
    execFileSync('umount', [mountPoint], { stdio: 'ignore' });
  } catch {
    // not mounted: the test unmounted it already
  }
  if (loop) execFileSync('losetup', ['-d', loop]);
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  ec2Mock.reset();
  ec2Mock.on(DescribeVolumesCommand).callsFake((input) =>
    input.Filters ? { Volumes: [{ VolumeId: VOLUME, AvailabilityZone: AZ, State: 'available' }] } : { Volumes: [volumeState] },
  );
  ec2Mock.on(AttachVolumeCommand).callsFake(() => {
    // udev's job on a real instance: the stable name appears once the volume is attached.
    const link = nvmeDevicePath(VOLUME, byId);
    if (!existsSync(link)) symlinkSync(loop, link);
    volumeState = { VolumeId: VOLUME, State: 'in-use', Attachments: [{ InstanceId: SELF, State: 'attached' }] };
    return { State: 'attaching' };
  });
});

async function boot(system: LoopSystem): Promise<void> {
  await bootstrapMta(
    {
      ec2: new EC2Client({ region: 'eu-west-1' }),
      system,
      clock: new VirtualClock(),
      log: new MemoryLog(),
      identity: async () => ({ instanceId: SELF, availabilityZone: AZ, region: 'eu-west-1' }),
    },
    { ...MTA_DEFAULTS, slot: SLOT, persistentPath: mountPoint, readyUrl: ready.url, byIdDir: byId },
  );
}

test('first boot: a blank volume gets ext4, is mounted at the persistent path, and the MTA writes onto it', async () => {
  volumeState = { VolumeId: VOLUME, State: 'available', Attachments: [] };
  const system = new LoopSystem(mountPoint);
  await boot(system);

  expect(system.events).toEqual(['mkfs', 'start volley-mta.service', 'signal true']);
  expect(sh('findmnt', ['-n', '-o', 'SOURCE,FSTYPE', '--mountpoint', mountPoint]).split(/\s+/)).toEqual([loop, 'ext4']);
  expect(sh('blkid', ['-p', '-s', 'LABEL', '-o', 'value', loop])).toBe('volley');

  // The daemon's first write and a spool file land on the volume, not the root disk.
  mkdirSync(join(mountPoint, 'spool'));
  writeFileSync(join(mountPoint, 'spool', 'segment-000001'), 'queued mail');
  execFileSync('umount', [mountPoint]);
  expect(existsSync(join(mountPoint, 'started-by'))).toBe(false);
});

test('replacement instance: the same volume with a spool is mounted again, never reformatted', async () => {
  // The previous instance is gone; EC2 reports the volume free again.
  volumeState = { VolumeId: VOLUME, State: 'available', Attachments: [] };
  rmSync(nvmeDevicePath(VOLUME, byId));
  const system = new LoopSystem(mountPoint);
  await boot(system);

  expect(system.events).toEqual(['start volley-mta.service', 'signal true']);
  expect(readFileSync(join(mountPoint, 'spool', 'segment-000001'), 'utf8')).toBe('queued mail');
});

test('bootstrap run again while mounted (unit restart): keeps the mount and the data', async () => {
  const system = new LoopSystem(mountPoint);
  await boot(system);
  expect(system.events).toEqual(['start volley-mta.service', 'signal true']);
  expect(ec2Mock.commandCalls(AttachVolumeCommand)).toHaveLength(0);
  expect(readFileSync(join(mountPoint, 'spool', 'segment-000001'), 'utf8')).toBe('queued mail');
});

test('a volume whose ext4 lost its primary superblock (blkid finds no signature) is refused, never formatted: the queue is still there to repair', async () => {
  execFileSync('umount', [mountPoint]);
  // A torn write of the superblock's magic (0xEF53 at byte 1080): blkid then finds no filesystem, though the rest
  // of it (and the spool) is intact and e2fsck -b repairs it from a backup superblock.
  const magic = wipePrimaryMagic(loop);
  expect(spawnSync('blkid', ['-p', loop]).status).toBe(2);
  volumeState = { VolumeId: VOLUME, State: 'available', Attachments: [] };
  rmSync(nvmeDevicePath(VOLUME, byId));

  const system = new LoopSystem(mountPoint);
  // 64 MiB: 1 KiB blocks, the first backup superblock at block 8193.
  await expect(boot(system)).rejects.toMatchObject({ code: 'EFILESYSTEM', message: expect.stringContaining(`primary superblock is damaged (e2fsck -b 8193 -B 1024 ${loop} repairs it from a backup); refusing to format`) });
  expect(system.events).toEqual(['signal false']);

  restorePrimaryMagic(loop, magic);
  execFileSync('mount', [loop, mountPoint]);
  expect(readFileSync(join(mountPoint, 'spool', 'segment-000001'), 'utf8')).toBe('queued mail');
});

// mke2fs writes its tables into the first MiB long before any superblock (the backups, then the primary, are its
// last writes): an instance gone mid-way through its volume's first format leaves data there and no superblock.
// That volume never held mail; refusing it would fail every boot of the slot for good.
test('a never-used volume whose first mkfs was interrupted is formatted again and the MTA starts on it', async () => {
  execFileSync('umount', [mountPoint]);
  execFileSync('dd', ['if=/dev/zero', `of=${loop}`, 'bs=1M', 'count=64', 'conv=fsync', 'status=none']);
  interruptedMkfs(loop);
  expect(spawnSync('blkid', ['-p', loop]).status).toBe(2);
  expect(leadingDataIn(loop, BLANK_CHECK_BYTES)).toBe(true);
  volumeState = { VolumeId: VOLUME, State: 'available', Attachments: [] };
  rmSync(nvmeDevicePath(VOLUME, byId));

  const system = new LoopSystem(mountPoint);
  await boot(system);
  expect(system.events).toEqual(['mkfs', 'start volley-mta.service', 'signal true']);
  expect(sh('findmnt', ['-n', '-o', 'SOURCE,FSTYPE', '--mountpoint', mountPoint]).split(/\s+/)).toEqual([loop, 'ext4']);
  expect(readFileSync(join(mountPoint, 'started-by'), 'utf8')).toBe('volley-mta.service');
});
