// The fake EC2 through the real SDK v3 EC2 client, reached only through
// AWS_ENDPOINT_URL_EC2, signing with credentials the SDK fetched itself from
// the fake instance metadata (AWS_EC2_METADATA_SERVICE_ENDPOINT): the same
// path the bootstrap's calls take on an instance.
import {
  AttachNetworkInterfaceCommand,
  AttachVolumeCommand,
  DescribeNetworkInterfacesCommand,
  DescribeVolumesCommand,
  DetachVolumeCommand,
  EC2Client,
} from '@aws-sdk/client-ec2';
import { existsSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { nvmeDevicePath } from '../../../runtime/bootstrap/volume';
import { tempDir } from '../../helpers/tmp';
import { INSTANCE_LIKE_CREDENTIALS, useEnv } from './env-for-test';
import { type FakeAws, startFakeAws } from './index';

const dir = tempDir('volley-fake-ec2-');
const byId = join(dir, 'by-id');
let aws: FakeAws;
const attached: string[] = [];

beforeAll(async () => {
  aws = await startFakeAws({
    byIdDir: byId,
    onAttachInterface: (eni) => attached.push(...eni.privateIpAddresses),
    instance: { instanceId: 'i-0rehearsal000001', availabilityZone: 'eu-west-1a', region: 'eu-west-1', localIpv4: '10.0.1.10', roleName: 'volley-mta' },
  });
});
useEnv(() => ({ ...INSTANCE_LIKE_CREDENTIALS, ...aws.env, AWS_REGION: undefined }));
afterAll(() => aws.close());

it('finds the slot volume by tag and AZ, attaches it (its NVMe name appears), detaches it', async () => {
  aws.ec2.addVolume({ volumeId: 'vol-0aaa', availabilityZone: 'eu-west-1a', sizeGiB: 1, state: 'available', tags: { 'volley:slot': 'dev-mta-1' }, loopDevice: '/dev/loop-fake' });
  aws.ec2.addVolume({ volumeId: 'vol-0bbb', availabilityZone: 'eu-west-1b', sizeGiB: 1, state: 'available', tags: { 'volley:slot': 'dev-mta-1' } });
  const ec2 = new EC2Client({ region: 'eu-west-1' });

  const found = await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'tag:volley:slot', Values: ['dev-mta-1'] }, { Name: 'availability-zone', Values: ['eu-west-1a'] }] }));
  expect(found.Volumes?.map((v) => v.VolumeId)).toEqual(['vol-0aaa']);

  await ec2.send(new AttachVolumeCommand({ VolumeId: 'vol-0aaa', InstanceId: 'i-0rehearsal000001', Device: '/dev/sdf' }));
  const after = await ec2.send(new DescribeVolumesCommand({ VolumeIds: ['vol-0aaa'] }));
  expect(after.Volumes?.[0]).toMatchObject({ State: 'in-use', Attachments: [{ InstanceId: 'i-0rehearsal000001', State: 'attached', Device: '/dev/sdf' }] });
  expect(readlinkSync(nvmeDevicePath('vol-0aaa', byId))).toBe('/dev/loop-fake');

  await expect(ec2.send(new AttachVolumeCommand({ VolumeId: 'vol-0aaa', InstanceId: 'i-other', Device: '/dev/sdf' }))).rejects.toMatchObject({ name: 'VolumeInUse' });
  await ec2.send(new DetachVolumeCommand({ VolumeId: 'vol-0aaa' }));
  expect(existsSync(nvmeDevicePath('vol-0aaa', byId))).toBe(false);
  expect(aws.ec2.volumes.get('vol-0aaa')?.state).toBe('available');
  await expect(ec2.send(new DescribeVolumesCommand({ VolumeIds: ['vol-0missing'] }))).rejects.toMatchObject({ name: 'InvalidVolume.NotFound' });

  // The SDK signed with the role credentials it read from the fake IMDS, for EC2 in the client's region.
  expect(aws.imds.requests).toEqual(expect.arrayContaining(['PUT api/token', 'GET meta-data/iam/security-credentials/volley-mta']));
  expect(aws.ec2.calls.map((c) => c.action)).toEqual(['DescribeVolumes', 'AttachVolume', 'DescribeVolumes', 'AttachVolume', 'DetachVolume', 'DescribeVolumes']);
});

it('finds and attaches the slot\'s sending interface, reporting its addresses', async () => {
  aws.ec2.addInterface({ networkInterfaceId: 'eni-0aaa', availabilityZone: 'eu-west-1a', status: 'available', privateIpAddresses: ['10.0.2.20', '10.0.2.21'], tags: { 'volley:slot': 'dev-proxy-1' } });
  const ec2 = new EC2Client({ region: 'eu-west-1' });
  const found = await ec2.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'tag:volley:slot', Values: ['dev-proxy-1'] }, { Name: 'availability-zone', Values: ['eu-west-1a'] }] }));
  expect(found.NetworkInterfaces?.[0]?.PrivateIpAddresses?.map((a) => a.PrivateIpAddress)).toEqual(['10.0.2.20', '10.0.2.21']);
  const attach = await ec2.send(new AttachNetworkInterfaceCommand({ NetworkInterfaceId: 'eni-0aaa', InstanceId: 'i-0rehearsal000001', DeviceIndex: 1 }));
  expect(attach.AttachmentId).toMatch(/^eni-attach-/);
  const after = await ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: ['eni-0aaa'] }));
  expect(after.NetworkInterfaces?.[0]).toMatchObject({ Status: 'in-use', Attachment: { InstanceId: 'i-0rehearsal000001', DeviceIndex: 1, Status: 'attached' } });
  expect(attached).toEqual(['10.0.2.20', '10.0.2.21']);
});
