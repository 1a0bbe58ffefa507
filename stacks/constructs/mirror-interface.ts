// The mirror interface of one node of an HA pair: a standalone ENI with a
// fixed private IP in the node's AZ, so its peer always dials the same
// address however often the instance behind it is replaced. The bootstrap
// attaches it at boot, as a proxy's sending interface.
import { Tags } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';
import { SLOT_TAG } from './single-instance-slot';

export interface MirrorInterfaceProps {
  /** The node's member id: the volley:slot tag the bootstrap finds the ENI by. */
  readonly memberId: string;
  readonly subnet: ec2.ISubnet;
  /** The node's own mirror group: only its peer's group is admitted, on the mirror port. */
  readonly securityGroup: ec2.ISecurityGroup;
  readonly ip: string;
}

export class MirrorInterface extends Construct {
  readonly networkInterface: ec2.CfnNetworkInterface;

  constructor(scope: Construct, id: string, props: MirrorInterfaceProps) {
    super(scope, id);
    this.networkInterface = new ec2.CfnNetworkInterface(this, 'Interface', {
      subnetId: props.subnet.subnetId,
      groupSet: [props.securityGroup.securityGroupId],
      description: `Volley mirror link of ${props.memberId}`,
      privateIpAddress: props.ip,
    });
    Tags.of(this.networkInterface).add(SLOT_TAG, props.memberId);
    Tags.of(this.networkInterface).add('volley:interface', 'mirror');
  }
}
