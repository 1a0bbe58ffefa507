import { Duration, RemovalPolicy, Size, Tags } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import type { Construct } from 'constructs';
import { pinnedImage } from './constructs/machine';
import { RuntimeDistribution } from './constructs/runtime-distribution';
import { acknowledgeLiteralAz } from './constructs/literal-az';
import { SingleInstanceSlot, SLOT_TAG } from './constructs/single-instance-slot';
import { SlotNotifications } from './constructs/slot-notifications';
import type { StorageStack } from './storage-stack';
import { VolleyStack, VolleyStackProps } from './volley-stack';

export interface MtaTierStackProps extends VolleyStackProps {
  readonly vpc: ec2.IVpc;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly storage: StorageStack;
  readonly targetGroups: readonly elbv2.INetworkTargetGroup[];
  /** The packaged runtime directory (see bin/package-asset.ts). */
  readonly packageDir: string;
  /** Absolute path of the environment's Volley config file. */
  readonly volleyConfigPath: string;
}

export interface MtaSlot {
  readonly slot: SingleInstanceSlot;
  readonly volume: ec2.Volume;
  readonly availabilityZone: string;
}

/** Slot ids name the environment, tier, AZ and position: prod-mta-us-east-1a-1. */
export function mtaSlotId(envName: string, availabilityZone: string, index: number): string {
  return `${envName}-mta-${availabilityZone}-${index}`;
}

/**
 * The MTA tier: per slot, a persistent-path volume and a group of one
 * instance in the same AZ. Slots are chained so CloudFormation replaces
 * them one at a time, each waiting for the new instance's ready signal.
 */
export class MtaTierStack extends VolleyStack {
  readonly slots: MtaSlot[] = [];

  constructor(scope: Construct, id: string, props: MtaTierStackProps) {
    super(scope, id, props);
    const { mta, rollout } = this.config;
    const notifications = new SlotNotifications(this, 'Notifications');
    const distribution = new RuntimeDistribution(this, 'Distribution', {
      packageDir: props.packageDir,
      volleyConfigFile: props.volleyConfigPath,
      configParameterName: `/volley/${this.config.name}/mta/config-url`,
    });

    for (const availabilityZone of this.config.availabilityZones) {
      for (let index = 1; index <= mta.slotsPerAz; index++) {
        const slotId = mtaSlotId(this.config.name, availabilityZone, index);
        const scope = `Slot-${availabilityZone}-${index}`;
        const volume = new ec2.Volume(this, `${scope}-Volume`, {
          // A literal AZ: deriving it from the instance would make a dependency cycle with the attach grant.
          availabilityZone,
          size: Size.gibibytes(mta.volume.sizeGiB),
          volumeType: ec2.EbsDeviceVolumeType.GP3,
          iops: mta.volume.iops,
          throughput: mta.volume.throughputMiBps,
          encrypted: true,
          // The spool outlives every instance and every stack update.
          removalPolicy: RemovalPolicy.RETAIN,
        });
        Tags.of(volume).add(SLOT_TAG, slotId);
        acknowledgeLiteralAz(volume);

        const slot = new SingleInstanceSlot(this, scope, {
          slotId,
          role: 'mta',
          vpc: props.vpc,
          availabilityZone,
          securityGroup: props.securityGroup,
          machineImage: pinnedImage(this.config),
          instanceType: new ec2.InstanceType(mta.instanceType),
          distribution,
          readyTimeout: Duration.minutes(rollout.readyTimeoutMinutes),
          healthFromLoadBalancer: true,
          notifications: notifications.topic,
        });
        slot.grantAttach('ec2:AttachVolume', this.formatArn({ service: 'ec2', resource: 'volume', resourceName: volume.volumeId }));
        slot.grantDescribe('ec2:DescribeVolumes');
        props.storage.grantWritePrefix(slot.role, `mta/${slotId}`);
        for (const targetGroup of props.targetGroups) slot.group.attachToNetworkTargetGroup(targetGroup);

        // One slot at a time: CloudFormation updates a group only after the one it depends on is done.
        const previous = this.slots[this.slots.length - 1];
        if (previous) slot.group.node.addDependency(previous.slot.group);
        this.slots.push({ slot, volume, availabilityZone });
      }
    }
  }
}
