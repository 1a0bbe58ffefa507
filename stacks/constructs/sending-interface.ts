import { RemovalPolicy, Tags } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';
import { SLOT_TAG } from './single-instance-slot';

export interface SendingInterfaceProps {
  readonly slotId: string;
  readonly subnet: ec2.ISubnet;
  readonly securityGroup: ec2.ISecurityGroup;
  /** Primary private IP: the address MTAs dial, stable across instance replacements. */
  readonly interfaceIp: string;
  /** Secondary private IPs the proxy binds when connecting to an MX. */
  readonly sendingIps: readonly string[];
}

/**
 * A standalone ENI carrying a proxy's sending IPs, each with its own Elastic
 * IP. It is not part of any instance, so replacing the proxy keeps the
 * addresses (and their reputation): the bootstrap reattaches it at boot.
 */
export class SendingInterface extends Construct {
  readonly networkInterface: ec2.CfnNetworkInterface;
  readonly elasticIps: ec2.CfnEIP[] = [];

  constructor(scope: Construct, id: string, props: SendingInterfaceProps) {
    super(scope, id);
    this.networkInterface = new ec2.CfnNetworkInterface(this, 'Interface', {
      subnetId: props.subnet.subnetId,
      groupSet: [props.securityGroup.securityGroupId],
      description: `Volley sending IPs of ${props.slotId}`,
      privateIpAddresses: [
        { privateIpAddress: props.interfaceIp, primary: true },
        ...props.sendingIps.map((ip) => ({ privateIpAddress: ip, primary: false })),
      ],
    });
    // Deleting it would give the sending IPs' reputation away with it.
    this.networkInterface.applyRemovalPolicy(RemovalPolicy.RETAIN);
    Tags.of(this.networkInterface).add(SLOT_TAG, props.slotId);

    props.sendingIps.forEach((ip, i) => {
      const eip = new ec2.CfnEIP(this, `Eip${i + 1}`, { domain: 'vpc' });
      eip.applyRemovalPolicy(RemovalPolicy.RETAIN);
      Tags.of(eip).add(SLOT_TAG, props.slotId);
      Tags.of(eip).add('volley:sending-ip', ip);
      new ec2.CfnEIPAssociation(this, `Eip${i + 1}Association`, {
        allocationId: eip.attrAllocationId,
        networkInterfaceId: this.networkInterface.ref,
        privateIpAddress: ip,
      });
      this.elasticIps.push(eip);
    });
  }
}
