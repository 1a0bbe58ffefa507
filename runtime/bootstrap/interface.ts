import { AttachNetworkInterfaceCommand, DescribeNetworkInterfacesCommand, EC2Client, NetworkInterface } from '@aws-sdk/client-ec2';
import { Clock, pollUntil } from './clock';
import { BootstrapError } from './errors';
import type { Log } from './system';
import { SLOT_TAG } from './volume';

/** The proxy's sending ENI goes second, after the instance's own. */
export const SENDING_DEVICE_INDEX = 1;

async function describe(ec2: EC2Client, interfaceId: string): Promise<NetworkInterface> {
  const result = await ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [interfaceId] }));
  const eni = result.NetworkInterfaces?.[0];
  if (!eni) throw new BootstrapError('ENOINTERFACE', `network interface ${interfaceId} disappeared`);
  return eni;
}

export interface SlotInterface {
  readonly id: string;
  readonly addresses: string[];
}

export async function findSlotInterface(ec2: EC2Client, slot: string, availabilityZone: string): Promise<SlotInterface> {
  const result = await ec2.send(
    new DescribeNetworkInterfacesCommand({
      Filters: [
        { Name: `tag:${SLOT_TAG}`, Values: [slot] },
        { Name: 'availability-zone', Values: [availabilityZone] },
      ],
    }),
  );
  const found = result.NetworkInterfaces ?? [];
  if (found.length === 0) throw new BootstrapError('ENOINTERFACE', `no network interface tagged ${SLOT_TAG}=${slot} in ${availabilityZone}`);
  if (found.length > 1) {
    throw new BootstrapError('EMANYINTERFACES', `${found.length} network interfaces tagged ${SLOT_TAG}=${slot} in ${availabilityZone}: expected exactly one`);
  }
  const eni = found[0] as NetworkInterface;
  return {
    id: eni.NetworkInterfaceId ?? '?',
    addresses: (eni.PrivateIpAddresses ?? []).map((a) => a.PrivateIpAddress).filter((ip): ip is string => ip !== undefined),
  };
}

export async function waitInterfaceAttachable(
  ec2: EC2Client,
  clock: Clock,
  log: Log,
  interfaceId: string,
  instanceId: string,
  timeoutMs: number,
): Promise<'available' | 'attached-here'> {
  let reported = '';
  return pollUntil(clock, { timeoutMs, intervalMs: 5000, what: `interface ${interfaceId} to be released by its previous instance` }, async () => {
    const eni = await describe(ec2, interfaceId);
    if (eni.Attachment?.InstanceId === instanceId && eni.Attachment.Status === 'attached') return 'attached-here';
    if (eni.Status === 'available') return 'available';
    const now = `${eni.Status}${eni.Attachment ? ` (${eni.Attachment.Status} to ${eni.Attachment.InstanceId})` : ''}`;
    if (now !== reported) log.info(`interface ${interfaceId} is ${now}; waiting`);
    reported = now;
    return undefined;
  });
}

export async function attachInterface(ec2: EC2Client, clock: Clock, interfaceId: string, instanceId: string, timeoutMs: number): Promise<void> {
  await ec2.send(new AttachNetworkInterfaceCommand({ NetworkInterfaceId: interfaceId, InstanceId: instanceId, DeviceIndex: SENDING_DEVICE_INDEX }));
  await pollUntil(clock, { timeoutMs, intervalMs: 2000, what: `interface ${interfaceId} to attach to ${instanceId}` }, async () => {
    const attachment = (await describe(ec2, interfaceId)).Attachment;
    return attachment?.InstanceId === instanceId && attachment.Status === 'attached' ? true : undefined;
  });
}
