import { Cidr, formatCidr, parseCidr } from './ip';

// The VPC's subnet plan, computed here so config validation can check that a
// proxy's IPs fall inside its AZ's public subnet. The network stack asks CDK
// for the same masks in the same order; a test checks both agree.
export const PUBLIC_SUBNET_MASK = 24;
export const PRIVATE_SUBNET_MASK = 20;

export interface SubnetPlan {
  readonly availabilityZone: string;
  readonly publicCidr: string;
  readonly privateCidr: string;
}

function alignUp(value: number, size: number): number {
  return Math.ceil(value / size) * size;
}

export function planSubnets(vpcCidr: string, availabilityZones: readonly string[]): SubnetPlan[] {
  const vpc = parseCidr(vpcCidr);
  if (!vpc) throw new Error(`not a CIDR: ${vpcCidr}`);
  const publicSize = 2 ** (32 - PUBLIC_SUBNET_MASK);
  const privateSize = 2 ** (32 - PRIVATE_SUBNET_MASK);
  const publics: Cidr[] = availabilityZones.map((_, i) => ({ base: vpc.base + i * publicSize, prefix: PUBLIC_SUBNET_MASK }));
  const privateStart = alignUp(vpc.base + availabilityZones.length * publicSize, privateSize);
  const privates: Cidr[] = availabilityZones.map((_, i) => ({ base: privateStart + i * privateSize, prefix: PRIVATE_SUBNET_MASK }));
  const end = vpc.base + 2 ** (32 - vpc.prefix);
  const last = privates[privates.length - 1];
  if (last && last.base + privateSize > end) {
    throw new Error(`VPC ${vpcCidr} is too small for ${availabilityZones.length} AZs of /${PUBLIC_SUBNET_MASK} public and /${PRIVATE_SUBNET_MASK} private subnets`);
  }
  return availabilityZones.map((availabilityZone, i) => ({
    availabilityZone,
    publicCidr: formatCidr(publics[i] as Cidr),
    privateCidr: formatCidr(privates[i] as Cidr),
  }));
}

/** Slot ids name the environment, tier, AZ and position: prod-mta-us-east-1a-1. */
export function mtaSlotId(envName: string, availabilityZone: string, index: number): string {
  return `${envName}-mta-${availabilityZone}-${index}`;
}

/** The MTA slots an environment runs now, in the order the tier creates them. */
export function mtaSlotIds(envName: string, availabilityZones: readonly string[], slotsPerAz: number): string[] {
  return availabilityZones.flatMap((az) => Array.from({ length: slotsPerAz }, (_, i) => mtaSlotId(envName, az, i + 1)));
}
