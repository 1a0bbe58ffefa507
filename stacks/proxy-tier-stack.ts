import { CfnOutput, Duration } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import type { ProxyConfig } from './environments';
import { pinnedImage } from './constructs/machine';
import { PublishedConfig, publishConfigText, RuntimeDistribution } from './constructs/runtime-distribution';
import { SendingInterface } from './constructs/sending-interface';
import { SingleInstanceSlot } from './constructs/single-instance-slot';
import { SlotNotifications } from './constructs/slot-notifications';
import { INSTANCE_FILES, proxyConfigText } from './topology';
import { VolleyStack, VolleyStackProps } from './volley-stack';

export interface ProxyTierStackProps extends VolleyStackProps {
  readonly vpc: ec2.IVpc;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly packageDir: string;
  readonly proxyLinkSecret: secretsmanager.ISecret;
  readonly proxyCaKeySecret: secretsmanager.ISecret;
}

export interface ProxySlot {
  readonly config: ProxyConfig;
  readonly slot: SingleInstanceSlot;
  readonly sendingInterface: SendingInterface;
  /** This proxy's own config, generated from the environment file. */
  readonly publishedConfig: PublishedConfig;
}

export function proxySlotId(envName: string, proxyName: string): string {
  return `${envName}-${proxyName}`;
}

/**
 * The proxy tier: per proxy, a standalone ENI with the sending IPs and
 * their Elastic IPs, and a group of one instance in the ENI's AZ that
 * reattaches it at boot. Replaced one proxy at a time, like the MTAs.
 */
export class ProxyTierStack extends VolleyStack {
  readonly slots: ProxySlot[] = [];

  constructor(scope: Construct, id: string, props: ProxyTierStackProps) {
    super(scope, id, props);
    const { proxy, rollout } = this.config;
    const notifications = new SlotNotifications(this, 'Notifications');
    const distribution = new RuntimeDistribution(this, 'Distribution', { packageDir: props.packageDir });

    for (const proxyConfig of proxy.proxies) {
      const slotId = proxySlotId(this.config.name, proxyConfig.name);
      const publicSubnet = props.vpc.selectSubnets({ subnetType: ec2.SubnetType.PUBLIC, availabilityZones: [proxyConfig.availabilityZone] }).subnets[0];
      if (!publicSubnet) throw new Error(`no public subnet in ${proxyConfig.availabilityZone} for proxy ${proxyConfig.name}`);
      const sendingInterface = new SendingInterface(this, `${proxyConfig.name}-Sending`, {
        slotId,
        subnet: publicSubnet,
        securityGroup: props.securityGroup,
        interfaceIp: proxyConfig.interfaceIp,
        sendingIps: proxyConfig.sendingIps,
      });
      // Each proxy has its own config (name, listen address, sending IPs), small enough to live in the parameter itself.
      const publishedConfig = publishConfigText(this, `${proxyConfig.name}-Config`, {
        text: proxyConfigText(this.config, proxyConfig),
        parameterName: `/volley/${this.config.name}/proxy/${proxyConfig.name}/config`,
        installPath: INSTANCE_FILES.proxyConfig,
      });
      const slot = new SingleInstanceSlot(this, proxyConfig.name, {
        slotId,
        role: 'proxy',
        vpc: props.vpc,
        availabilityZone: proxyConfig.availabilityZone,
        securityGroup: props.securityGroup,
        machineImage: pinnedImage(this.config),
        instanceType: new ec2.InstanceType(proxy.instanceType),
        distribution,
        config: publishedConfig,
        proxyLinkSecret: props.proxyLinkSecret,
        proxyCaKeySecret: props.proxyCaKeySecret,
        readyTimeout: Duration.minutes(rollout.readyTimeoutMinutes),
        healthFromLoadBalancer: false,
        notifications: notifications.topic,
      });
      const eniArn = this.formatArn({ service: 'ec2', resource: 'network-interface', resourceName: sendingInterface.networkInterface.ref });
      slot.grantAttach('ec2:AttachNetworkInterface', eniArn);
      slot.grantDescribe('ec2:DescribeNetworkInterfaces');

      const previous = this.slots[this.slots.length - 1];
      if (previous) slot.group.node.addDependency(previous.slot.group);
      this.slots.push({ config: proxyConfig, slot, sendingInterface, publishedConfig });

      sendingInterface.elasticIps.forEach((eip, i) => {
        // Operators need the public sending IPs for SPF and reverse DNS.
        new CfnOutput(this, `${proxyConfig.name}-PublicIp${i + 1}`, {
          value: eip.ref,
          description: `public address of ${proxyConfig.sendingIps[i]} on ${proxyConfig.name}`,
        });
      });
    }
  }
}
