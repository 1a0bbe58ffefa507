import { Clock, pollUntil } from './clock';
import { BootstrapError } from './errors';
import type { BootstrapSystem, Log } from './system';

export const FILESYSTEM_LABEL = 'volley';

export async function waitForDevice(system: BootstrapSystem, clock: Clock, path: string, timeoutMs: number): Promise<string> {
  await pollUntil(clock, { timeoutMs, intervalMs: 500, what: `device ${path} to appear` }, async () => ((await system.exists(path)) ? true : undefined));
  return system.realpath(path);
}

/**
 * Makes a filesystem only on a blank volume, then mounts it at the persistent
 * path. Anything found on the volume is kept: a volume with a partition table
 * or an ext4 backup superblock (its primary one damaged) is refused rather than
 * formatted. Blank: zeros, or data without any superblock (see LinuxSystem.probe).
 */
export async function mountPersistentPath(system: BootstrapSystem, log: Log, device: string, mountPoint: string): Promise<{ formatted: boolean }> {
  const mounted = await system.mountedSource(mountPoint);
  if (mounted !== undefined) {
    if ((await system.realpath(mounted).catch(() => mounted)) === device) {
      log.info(`${device} is already mounted at ${mountPoint}`);
      return { formatted: false };
    }
    throw new BootstrapError('EMOUNT', `${mountPoint} already has ${mounted} mounted, not the slot's volume ${device}`);
  }

  const probe = await system.probe(device);
  let formatted = false;
  if (probe.blank) {
    log.info(probe.unfinished ? `${device} holds no filesystem and no ext4 backup superblock (a first format that never finished): making an ext4 filesystem` : `${device} is blank: making an ext4 filesystem`);
    await system.makeFilesystem(device, FILESYSTEM_LABEL);
    formatted = true;
  } else if (!probe.type) {
    const backup = probe.ext4Backup;
    const what = probe.partitionTable
      ? `a ${probe.partitionTable} partition table`
      : backup
        ? `an ext4 filesystem whose primary superblock is damaged (e2fsck -b ${backup.block} -B ${backup.blockSize} ${device} repairs it from a backup)`
        : 'data but no filesystem signature';
    throw new BootstrapError('EFILESYSTEM', `${device} holds ${what}; refusing to format or mount it`);
  } else {
    log.info(`${device} holds a ${probe.type} filesystem: keeping it`);
  }
  await system.mount(device, mountPoint);
  log.info(`mounted ${device} at ${mountPoint}`);
  return { formatted };
}
