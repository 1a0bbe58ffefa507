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
    const [instanceId, availabilityZone, region] = await Promise.all([get('instance-id'), get('placement/availability-zone'), get('placement/region')]);
    return { instanceId, availabilityZone, region };
  } catch (err) {
    throw new BootstrapError('EMETADATA', `cannot read instance metadata: ${(err as Error).message}`);
  }
}
