// The way in for asynchronous bounces and feedback reports: an
// internet-facing Network Load Balancer whose TCP listener on port 25 (where
// a receiver's MTA delivers a DSN for the bounce domain's MX) forwards to
// every MTA's inbound listener (mta.inbound.port), health-checked on /readyz
// like the injection target groups. Its DNS name is a stack output: the
// bounce domains' MX points there (the Dns stack adds the record for domains
// inside the environment's hosted zone). One per environment.
import { CfnOutput, Duration, Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import { Construct } from 'constructs';
import { readyzHealthCheck } from './readyz-health-check';

/** Where remote MTAs deliver: SMTP's port, the only one an MX is reached on. */
export const INBOUND_LISTEN_PORT = 25;

export interface InboundEntryProps {
  readonly vpc: ec2.IVpc;
  /** Admits the internet on INBOUND_LISTEN_PORT only; the MTAs admit this group on their inbound and admin ports (NetworkStack). */
  readonly securityGroup: ec2.ISecurityGroup;
  /** The MTAs' inbound listener port (mta.inbound.port). */
  readonly targetPort: number;
  readonly adminPort: number;
  readonly domains: readonly string[];
  readonly deregistrationDelaySeconds: number;
}

export class InboundEntry extends Construct {
  readonly loadBalancer: elbv2.NetworkLoadBalancer;
  readonly targetGroup: elbv2.NetworkTargetGroup;

  constructor(scope: Construct, id: string, props: InboundEntryProps) {
    super(scope, id);
    this.loadBalancer = new elbv2.NetworkLoadBalancer(this, 'Nlb', {
      vpc: props.vpc,
      internetFacing: true,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      // With a security group on the NLB, the MTAs' rule can name this group rather than the internet: AWS
      // documents that a target admitting the NLB's group accepts its traffic even with client IP preservation.
      securityGroups: [props.securityGroup],
      crossZoneEnabled: true,
    });
    Validations.of(this.loadBalancer).acknowledge({
      id: 'AwsSolutions-ELB2',
      reason: 'NLB access logs only record TLS listeners; this listener is plain TCP (SMTP from remote MTAs), so the log would stay empty. Connections are recorded by VPC flow logs, and every report by the MTA (events, inbound/unmatched/).',
    });
    this.targetGroup = new elbv2.NetworkTargetGroup(this, 'Mtas', {
      vpc: props.vpc,
      port: props.targetPort,
      protocol: elbv2.Protocol.TCP,
      targetType: elbv2.TargetType.INSTANCE,
      deregistrationDelay: Duration.seconds(props.deregistrationDelaySeconds),
      // The listener logs and counts the sending MTA's address (its Received: header), as the injection listeners do.
      proxyProtocolV2: false,
      preserveClientIp: true,
      healthCheck: readyzHealthCheck(props.adminPort),
      connectionTermination: false,
    });
    this.loadBalancer.addListener('Smtp', { port: INBOUND_LISTEN_PORT, protocol: elbv2.Protocol.TCP, defaultTargetGroups: [this.targetGroup] });
    // In the stack's scope, so its key is plainly InboundDnsName (a construct's child would get a hash suffix).
    new CfnOutput(Stack.of(this), 'InboundDnsName', {
      value: this.loadBalancer.loadBalancerDnsName,
      description: `the MX target of ${props.domains.join(', ')}: bounces and feedback reports (README, Inbound bounces and complaints)`,
    });
  }
}
