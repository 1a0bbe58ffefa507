import { Cidr, formatCidr, formatIpv4, parseCidr } from './ip';

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

/**
 * HA pairs (`mta.ha`): each MTA slot is two nodes, "a" in the slot's own AZ
 * and "b" in the next AZ of the list, each with its own volume and group.
 * Node "a" keeps the slot's id as its volume and group tag, so turning `ha`
 * on keeps the slot's existing volume (and queue) on node "a"; node "b" is
 * `<slot>-b`. Both run as one logical node: VOLLEY_NODE_ID is the slot id.
 */
export type PairMemberName = 'a' | 'b';

export interface PairMember {
  readonly member: PairMemberName;
  /** The volley:slot tag of this node's volume, group and mirror interface. */
  readonly memberId: string;
  readonly availabilityZone: string;
  /** The fixed private IP of this node's mirror interface: where its peer dials. */
  readonly mirrorIp: string;
}

export interface MtaPair {
  /** The logical slot: the node id both members run as (S3 prefix, arbiter key). */
  readonly slotId: string;
  readonly a: PairMember;
  readonly b: PairMember;
}

/**
 * The mirror interfaces' fixed IPs are taken from the first /26 of each
 * private subnet (60 usable addresses: two per slot of an AZ, 20 slots at
 * most). Nothing reserves them from AWS's own assignment (a subnet CIDR
 * reservation is not a CloudFormation type in every region): the Mta stack
 * creates the interfaces before any group launches an instance, and an
 * address some instance already holds fails that deploy, naming it.
 */
export const MIRROR_BLOCK_MASK = 26;

/** The member's id: node "a" is the slot itself (its volume predates the pair), node "b" is `<slot>-b`. */
export function pairMemberId(slotId: string, member: PairMemberName): string {
  return member === 'a' ? slotId : `${slotId}-b`;
}

/** The block of one private subnet the mirror IPs come from (its first /26). */
export function mirrorBlock(privateCidr: string): string {
  const cidr = parseCidr(privateCidr);
  if (!cidr) throw new Error(`not a CIDR: ${privateCidr}`);
  return formatCidr({ base: cidr.base, prefix: MIRROR_BLOCK_MASK });
}

/**
 * The pairs of an environment whose slots are pairs. In the mirror block
 * of each AZ's private subnet (AWS keeps its first four addresses), the
 * "a" nodes of that AZ's slots take the even offsets 4, 6, ... and the "b"
 * nodes of the previous AZ's slots the odd ones 5, 7, ...: no two nodes share
 * an address, and adding a slot moves no existing one.
 */
export function mtaPairs(envName: string, vpcCidr: string, availabilityZones: readonly string[], slotsPerAz: number): MtaPair[] {
  const subnets = planSubnets(vpcCidr, availabilityZones);
  const base = (i: number): number => (parseCidr((subnets[i] as SubnetPlan).privateCidr) as Cidr).base;
  return availabilityZones.flatMap((az, i) =>
    Array.from({ length: slotsPerAz }, (_, k) => {
      const slotId = mtaSlotId(envName, az, k + 1);
      const next = (i + 1) % availabilityZones.length;
      return {
        slotId,
        a: { member: 'a' as const, memberId: pairMemberId(slotId, 'a'), availabilityZone: az, mirrorIp: formatIpv4(base(i) + 4 + 2 * k) },
        b: { member: 'b' as const, memberId: pairMemberId(slotId, 'b'), availabilityZone: availabilityZones[next] as string, mirrorIp: formatIpv4(base(next) + 5 + 2 * k) },
      };
    }),
  );
}

/** Every volume the tier holds now: one per slot, or two per slot (both nodes) when the slots are pairs. */
export function mtaVolumeIds(envName: string, availabilityZones: readonly string[], slotsPerAz: number, ha: boolean): string[] {
  const slots = mtaSlotIds(envName, availabilityZones, slotsPerAz);
  return ha ? slots.flatMap((slot) => [pairMemberId(slot, 'a'), pairMemberId(slot, 'b')]) : slots;
}
