import { Duration, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import type { Construct } from 'constructs';
import { InboundEntry } from './constructs/inbound-entry';
import { readyzHealthCheck } from './constructs/readyz-health-check';
import { VolleyError } from '../runtime/shared/errors';
import type { LoadBalancerConfig } from './environments';
import { VolleyStack, VolleyStackProps } from './volley-stack';

export interface IngressStackProps extends VolleyStackProps {
  readonly vpc: ec2.IVpc;
  readonly securityGroup: ec2.ISecurityGroup;
  /** With mta.inbound: the inbound load balancer's own group (NetworkStack.inboundLoadBalancerSecurityGroup). */
  readonly inboundSecurityGroup?: ec2.ISecurityGroup;
}

/** One load balancer and the target groups the MTA slots register into. */
export interface LoadBalancerEndpoint {
  readonly config: LoadBalancerConfig;
  readonly loadBalancer: elbv2.NetworkLoadBalancer;
  readonly targetGroups: elbv2.NetworkTargetGroup[];
}

/**
 * Network Load Balancers in front of the MTAs: plain TCP for SMTP and the
 * API (TLS ends on the MTA, which must see STARTTLS itself), every target
 * group health-checked on the MTA's /readyz.
 */
export class IngressStack extends VolleyStack {
  readonly endpoints: LoadBalancerEndpoint[];
  /** With mta.inbound: the internet-facing NLB the bounce domains' MX points at. */
  readonly inbound?: InboundEntry;

  constructor(scope: Construct, id: string, props: IngressStackProps) {
    super(scope, id, props);
    const { mta, ingress } = this.config;
    const listeners = [
      ...mta.smtpPorts.map((port) => ({ name: `Smtp${port}`, listenPort: port, targetPort: port })),
      { name: 'Api', listenPort: ingress.apiListenerPort, targetPort: mta.apiPort },
    ];

    this.endpoints = ingress.loadBalancers.map((lbConfig) => {
      const loadBalancer = new elbv2.NetworkLoadBalancer(this, `Nlb-${lbConfig.name}`, {
        vpc: props.vpc,
        internetFacing: ingress.internetFacing,
        vpcSubnets: { subnetType: ingress.internetFacing ? ec2.SubnetType.PUBLIC : ec2.SubnetType.PRIVATE_WITH_EGRESS },
        securityGroups: [props.securityGroup],
        // A slot lives in one AZ; without cross-zone each AZ's node would only reach its own slots.
        crossZoneEnabled: true,
      });
      Validations.of(loadBalancer).acknowledge({
        id: 'AwsSolutions-ELB2',
        reason: 'NLB access logs only record TLS listeners; these listeners are plain TCP (TLS ends on the MTA), so the log would stay empty. Connections are recorded by VPC flow logs and the MTA.',
      });

      const targetGroups = listeners.map(({ name, listenPort, targetPort }) => {
        const targetGroup = new elbv2.NetworkTargetGroup(this, `${lbConfig.name}-${name}`, {
          vpc: props.vpc,
          port: targetPort,
          protocol: elbv2.Protocol.TCP,
          targetType: elbv2.TargetType.INSTANCE,
          // Let the longest SMTP transaction finish on a target that is leaving.
          deregistrationDelay: Duration.seconds(ingress.deregistrationDelaySeconds),
          // PROXY v2 would need a v2 parser before smtp-server; client IP preservation gives the MTA the address instead.
          proxyProtocolV2: false,
          preserveClientIp: true,
          healthCheck: readyzHealthCheck(mta.adminPort),
          connectionTermination: false,
        });
        loadBalancer.addListener(name, { port: listenPort, protocol: elbv2.Protocol.TCP, defaultTargetGroups: [targetGroup] });
        return targetGroup;
      });
      return { config: lbConfig, loadBalancer, targetGroups };
    });

    if (mta.inbound) {
      // A programming error (the app wires it from NetworkStack), named so it is not mistaken for a bad environment file.
      if (!props.inboundSecurityGroup) throw new VolleyError('ESTACKWIRING', `${this.config.name}: mta.inbound needs the network stack's inbound load balancer security group (IngressStackProps.inboundSecurityGroup)`);
      // Its own NLB, always internet-facing: bounces come from any MTA on the internet, while injection stays
      // where ingress.internetFacing puts it (internal in every environment); and an internet-facing ingress
      // NLB already has port 25, for injection.
      this.inbound = new InboundEntry(this, 'Inbound', {
        vpc: props.vpc,
        securityGroup: props.inboundSecurityGroup,
        targetPort: mta.inbound.port,
        adminPort: mta.adminPort,
        domains: mta.inbound.domains,
        deregistrationDelaySeconds: ingress.deregistrationDelaySeconds,
      });
    }
  }
}
