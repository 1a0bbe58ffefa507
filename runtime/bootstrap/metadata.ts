import { BootstrapError } from './errors';

export interface InstanceIdentity {
  readonly instanceId: string;
  readonly availabilityZone: string;
  readonly region: string;
}

/**
 * IMDS's base URL: the SDK's own AWS_EC2_METADATA_SERVICE_ENDPOINT when set
 * (the SDK reads credentials there, so the bootstrap must read the identity of
 * the same instance), else the link-local address every instance has.
 */
export function imdsBase(env: NodeJS.ProcessEnv = process.env): string {
  const endpoint = env.AWS_EC2_METADATA_SERVICE_ENDPOINT?.trim() || 'http://169.254.169.254';
  return `${endpoint.replace(/\/+$/, '')}/latest`;
}

/** Reads the instance's id, AZ and region from IMDSv2 (the launch template requires v2). */
export async function readInstanceIdentity(base = imdsBase()): Promise<InstanceIdentity> {
  const [instanceId, availabilityZone, region] = await readMetadata(base, ['instance-id', 'placement/availability-zone', 'placement/region']);
  return { instanceId, availabilityZone, region } as InstanceIdentity;
}

/** The instance's primary private IPv4 address: what the other MTAs dial its drain endpoint on. */
export async function readPrivateIp(base = imdsBase()): Promise<string> {
  return (await readMetadata(base, ['local-ipv4']))[0] as string;
}

/** meta-data/<path> for each path, with one IMDSv2 token. */
async function readMetadata(base: string, paths: readonly string[]): Promise<string[]> {
  try {
    const tokenResponse = await fetch(`${base}/api/token`, {
      method: 'PUT',
      headers: { 'X-aws-ec2-metadata-token-ttl-seconds': '300' },
      signal: AbortSignal.timeout(5000),
    });
    if (!tokenResponse.ok) throw new Error(`token: HTTP ${tokenResponse.status}`);
    const token = await tokenResponse.text();
    const get = async (path: string): Promise<string> => {
      const response = await fetch(`${base}/meta-data/${path}`, { headers: { 'X-aws-ec2-metadata-token': token }, signal: AbortSignal.timeout(5000) });
      if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
      return (await response.text()).trim();
    };
    return await Promise.all(paths.map(get));
  } catch (err) {
    throw new BootstrapError('EMETADATA', `cannot read instance metadata: ${(err as Error).message}`);
  }
}
