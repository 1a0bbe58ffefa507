// A fake EC2 for the calls the bootstrap makes (runtime/bootstrap/volume.ts,
// interface.ts), in the EC2 query protocol the SDK v3 speaks: form-encoded
// POSTs, XML answers. State lives in memory for tests to set and inspect.
// Attaching a volume does what udev does on a Nitro instance: the volume's
// stable NVMe name appears under the by-id directory, pointing at the loop
// device that stands in for it.
import { existsSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { nvmeDevicePath } from '../../../runtime/bootstrap/volume';
import { ec2Error, type FakeRequest, type FakeResponse, type Handler, requireScope, xmlEscape } from './http';

export interface FakeVolume {
  volumeId: string;
  availabilityZone: string;
  sizeGiB: number;
  state: 'available' | 'in-use' | 'creating' | 'deleting' | 'deleted' | 'error';
  tags: Record<string, string>;
  attachment?: { instanceId: string; device: string; state: 'attaching' | 'attached' | 'detaching' };
  /** The loop device standing in for the volume: the by-id symlink points here once attached. */
  loopDevice?: string;
}

export interface FakeInterface {
  networkInterfaceId: string;
  availabilityZone: string;
  status: 'available' | 'in-use';
  privateIpAddresses: string[];
  tags: Record<string, string>;
  attachment?: { attachmentId: string; instanceId: string; deviceIndex: number; status: 'attaching' | 'attached' | 'detaching' };
}

export interface FakeEc2Options {
  /** Where attached volumes appear (the instance's /dev/disk/by-id). */
  byIdDir: string;
  /** Called when an interface is attached (the rehearsal adds its addresses to the namespace). */
  onAttachInterface?: (eni: FakeInterface) => void;
}

const NS = 'http://ec2.amazonaws.com/doc/2016-11-15/';

/** Filter.N.Name / Filter.N.Value.M, and Prefix.N lists, from the query form. */
function filters(form: URLSearchParams): { name: string; values: string[] }[] {
  const out: { name: string; values: string[] }[] = [];
  for (let n = 1; form.has(`Filter.${n}.Name`); n++) {
    const values: string[] = [];
    for (let m = 1; form.has(`Filter.${n}.Value.${m}`); m++) values.push(form.get(`Filter.${n}.Value.${m}`) as string);
    out.push({ name: form.get(`Filter.${n}.Name`) as string, values });
  }
  return out;
}

function list(form: URLSearchParams, prefix: string): string[] {
  const out: string[] = [];
  for (let n = 1; form.has(`${prefix}.${n}`); n++) out.push(form.get(`${prefix}.${n}`) as string);
  return out;
}

function matches(item: { availabilityZone: string; tags: Record<string, string>; state?: string }, fs: { name: string; values: string[] }[]): boolean {
  return fs.every(({ name, values }) => {
    if (name.startsWith('tag:')) return values.includes(item.tags[name.slice(4)] ?? '\0');
    if (name === 'availability-zone') return values.includes(item.availabilityZone);
    if (name === 'status') return values.includes(item.state ?? '');
    throw new Error(`fake EC2: filter ${name} is not supported`);
  });
}

const tagSet = (tags: Record<string, string>): string =>
  `<tagSet>${Object.entries(tags).map(([k, v]) => `<item><key>${xmlEscape(k)}</key><value>${xmlEscape(v)}</value></item>`).join('')}</tagSet>`;

function volumeXml(v: FakeVolume): string {
  const a = v.attachment;
  return `<item><volumeId>${v.volumeId}</volumeId><size>${v.sizeGiB}</size><availabilityZone>${v.availabilityZone}</availabilityZone><status>${v.state}</status><volumeType>gp3</volumeType><encrypted>true</encrypted><attachmentSet>${
    a ? `<item><volumeId>${v.volumeId}</volumeId><instanceId>${a.instanceId}</instanceId><device>${a.device}</device><status>${a.state}</status><deleteOnTermination>false</deleteOnTermination></item>` : ''
  }</attachmentSet>${tagSet(v.tags)}</item>`;
}

function interfaceXml(e: FakeInterface): string {
  const a = e.attachment;
  const ips = e.privateIpAddresses.map((ip, i) => `<item><privateIpAddress>${ip}</privateIpAddress><primary>${i === 0}</primary></item>`).join('');
  return `<item><networkInterfaceId>${e.networkInterfaceId}</networkInterfaceId><availabilityZone>${e.availabilityZone}</availabilityZone><status>${e.status}</status><privateIpAddress>${e.privateIpAddresses[0] ?? ''}</privateIpAddress><privateIpAddressesSet>${ips}</privateIpAddressesSet>${
    a ? `<attachment><attachmentId>${a.attachmentId}</attachmentId><instanceId>${a.instanceId}</instanceId><deviceIndex>${a.deviceIndex}</deviceIndex><status>${a.status}</status></attachment>` : ''
  }${tagSet(e.tags)}</item>`;
}

export class FakeEc2 {
  readonly volumes = new Map<string, FakeVolume>();
  readonly interfaces = new Map<string, FakeInterface>();
  /** Every action called, with its form, in order. */
  readonly calls: { action: string; form: Record<string, string> }[] = [];
  private attachments = 0;

  constructor(private readonly options: FakeEc2Options) {}

  addVolume(v: FakeVolume): void {
    this.volumes.set(v.volumeId, v);
  }

  addInterface(e: FakeInterface): void {
    this.interfaces.set(e.networkInterfaceId, e);
  }

  /** The previous instance let go (what EC2 does once it has stopped): the volume becomes available. */
  release(volumeId: string): void {
    const v = this.volume(volumeId);
    if (v.attachment) this.unlink(v);
    v.attachment = undefined;
    v.state = 'available';
  }

  readonly handler: Handler = (request: FakeRequest): FakeResponse => {
    const refused = requireScope(request, 'ec2', (m) => ec2Error(403, 'AuthFailure', m));
    if (refused) return refused;
    const form = new URLSearchParams(request.body.toString());
    const action = form.get('Action') ?? '';
    this.calls.push({ action, form: Object.fromEntries(form) });
    try {
      return this.dispatch(action, form);
    } catch (err) {
      const e = err as Error & { ec2Code?: string };
      return ec2Error(400, e.ec2Code ?? 'InvalidParameterValue', e.message);
    }
  };

  private dispatch(action: string, form: URLSearchParams): FakeResponse {
    const reply = (body: string): FakeResponse => ({
      status: 200,
      headers: { 'content-type': 'text/xml' },
      body: `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${NS}"><requestId>fake-${this.calls.length}</requestId>${body}</${action}Response>`,
    });
    switch (action) {
      case 'DescribeVolumes': {
        const ids = list(form, 'VolumeId');
        for (const id of ids) this.volume(id);
        const fs = filters(form);
        const found = [...this.volumes.values()].filter((v) => (ids.length === 0 || ids.includes(v.volumeId)) && matches({ ...v }, fs));
        return reply(`<volumeSet>${found.map(volumeXml).join('')}</volumeSet>`);
      }
      case 'AttachVolume': {
        const v = this.volume(form.get('VolumeId') ?? '');
        const instanceId = form.get('InstanceId') ?? '';
        const device = form.get('Device') ?? '';
        if (v.state !== 'available') throw Object.assign(new Error(`${v.volumeId} is ${v.state}`), { ec2Code: 'VolumeInUse' });
        v.state = 'in-use';
        v.attachment = { instanceId, device, state: 'attached' };
        this.link(v);
        return reply(`<volumeId>${v.volumeId}</volumeId><instanceId>${instanceId}</instanceId><device>${device}</device><status>attaching</status><attachTime>${new Date().toISOString()}</attachTime>`);
      }
      case 'DetachVolume': {
        const v = this.volume(form.get('VolumeId') ?? '');
        const a = v.attachment;
        if (!a) throw Object.assign(new Error(`${v.volumeId} is not attached`), { ec2Code: 'IncorrectState' });
        this.release(v.volumeId);
        return reply(`<volumeId>${v.volumeId}</volumeId><instanceId>${a.instanceId}</instanceId><device>${a.device}</device><status>detaching</status>`);
      }
      case 'DescribeNetworkInterfaces': {
        const ids = list(form, 'NetworkInterfaceId');
        for (const id of ids) this.eni(id);
        const fs = filters(form);
        const found = [...this.interfaces.values()].filter((e) => (ids.length === 0 || ids.includes(e.networkInterfaceId)) && matches({ ...e, state: e.status }, fs));
        return reply(`<networkInterfaceSet>${found.map(interfaceXml).join('')}</networkInterfaceSet>`);
      }
      case 'AttachNetworkInterface': {
        const e = this.eni(form.get('NetworkInterfaceId') ?? '');
        if (e.status !== 'available') throw Object.assign(new Error(`${e.networkInterfaceId} is ${e.status}`), { ec2Code: 'InvalidNetworkInterface.InUse' });
        const attachmentId = `eni-attach-${String(++this.attachments).padStart(17, '0')}`;
        e.status = 'in-use';
        e.attachment = { attachmentId, instanceId: form.get('InstanceId') ?? '', deviceIndex: Number(form.get('DeviceIndex')), status: 'attached' };
        this.options.onAttachInterface?.(e);
        return reply(`<attachmentId>${attachmentId}</attachmentId><networkCardIndex>0</networkCardIndex>`);
      }
      default:
        throw Object.assign(new Error(`fake EC2 does not implement ${action || '(no Action)'}`), { ec2Code: 'InvalidAction' });
    }
  }

  private volume(id: string): FakeVolume {
    const v = this.volumes.get(id);
    if (!v) throw Object.assign(new Error(`The volume '${id}' does not exist.`), { ec2Code: 'InvalidVolume.NotFound' });
    return v;
  }

  private eni(id: string): FakeInterface {
    const e = this.interfaces.get(id);
    if (!e) throw Object.assign(new Error(`The networkInterface ID '${id}' does not exist`), { ec2Code: 'InvalidNetworkInterfaceID.NotFound' });
    return e;
  }

  private link(v: FakeVolume): void {
    if (!v.loopDevice) return;
    const path = nvmeDevicePath(v.volumeId, this.options.byIdDir);
    mkdirSync(dirname(path), { recursive: true });
    if (!existsSync(path)) symlinkSync(v.loopDevice, path);
  }

  private unlink(v: FakeVolume): void {
    rmSync(nvmeDevicePath(v.volumeId, this.options.byIdDir), { force: true });
  }
}
