import { AttachVolumeCommand, DescribeVolumesCommand, EC2Client, Volume } from '@aws-sdk/client-ec2';
import { Clock, pollUntil } from './clock';
import { BootstrapError } from './errors';
import type { Log } from './system';

export const SLOT_TAG = 'volley:slot';

/** Linux sees the volume as an NVMe device whose serial is the volume id without its dash. */
export function nvmeDevicePath(volumeId: string, byIdDir = '/dev/disk/by-id'): string {
  return `${byIdDir}/nvme-Amazon_Elastic_Block_Store_${volumeId.replace('-', '')}`;
}

async function describe(ec2: EC2Client, volumeId: string): Promise<Volume> {
  const result = await ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }));
  const volume = result.Volumes?.[0];
  if (!volume) throw new BootstrapError('ENOVOLUME', `volume ${volumeId} disappeared`);
  return volume;
}

/** The slot's volume in this AZ. Exactly one: none or two means the slot is misconfigured, and guessing could mount another slot's spool. */
export async function findSlotVolume(ec2: EC2Client, slot: string, availabilityZone: string): Promise<string> {
  const result = await ec2.send(
    new DescribeVolumesCommand({
      Filters: [
        { Name: `tag:${SLOT_TAG}`, Values: [slot] },
        { Name: 'availability-zone', Values: [availabilityZone] },
      ],
    }),
  );
  const ids = (result.Volumes ?? []).map((v) => v.VolumeId ?? '?');
  if (ids.length === 0) throw new BootstrapError('ENOVOLUME', `no volume tagged ${SLOT_TAG}=${slot} in ${availabilityZone}`);
  if (ids.length > 1) throw new BootstrapError('EMANYVOLUMES', `${ids.length} volumes tagged ${SLOT_TAG}=${slot} in ${availabilityZone} (${ids.join(', ')}): expected exactly one`);
  return ids[0] as string;
}

export type Attachable = 'available' | 'attached-here';

/**
 * Waits until the volume can be attached here. After a replacement the old
 * instance may still be shutting down with the volume attached: we wait for
 * EC2 to release it, never force-detach a volume a live MTA may be writing.
 */
export async function waitAttachable(
  ec2: EC2Client,
  clock: Clock,
  log: Log,
  volumeId: string,
  instanceId: string,
  timeoutMs: number,
): Promise<Attachable> {
  let reported = '';
  return pollUntil(clock, { timeoutMs, intervalMs: 5000, what: `volume ${volumeId} to be released by its previous instance` }, async () => {
    const volume = await describe(ec2, volumeId);
    const attachment = volume.Attachments?.[0];
    if (attachment?.InstanceId === instanceId && attachment.State === 'attached') return 'attached-here'; // a reboot
    if (volume.State === 'available') return 'available';
    if (volume.State === 'error' || volume.State === 'deleting' || volume.State === 'deleted') {
      throw new BootstrapError('EBADSTATE', `volume ${volumeId} is ${volume.State}`);
    }
    const now = `${volume.State}${attachment ? ` (${attachment.State} to ${attachment.InstanceId})` : ''}`;
    if (now !== reported) log.info(`volume ${volumeId} is ${now}; waiting`);
    reported = now;
    return undefined;
  });
}

export async function attachVolume(
  ec2: EC2Client,
  clock: Clock,
  volumeId: string,
  instanceId: string,
  timeoutMs: number,
): Promise<void> {
  // The device name is only a hint on Nitro; the NVMe id is what we look for.
  await ec2.send(new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: instanceId, Device: '/dev/sdf' }));
  await pollUntil(clock, { timeoutMs, intervalMs: 2000, what: `volume ${volumeId} to attach to ${instanceId}` }, async () => {
    const attachment = (await describe(ec2, volumeId)).Attachments?.find((a) => a.InstanceId === instanceId);
    return attachment?.State === 'attached' ? true : undefined;
  });
}
