import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { INBOUND_LISTEN_PORT } from './constructs/inbound-entry';
import { acknowledgeLiteralAz } from './constructs/literal-az';
import { mtaPairs, PRIVATE_SUBNET_MASK, PUBLIC_SUBNET_MASK } from './environments/layout';
import { VolleyStack, VolleyStackProps } from './volley-stack';

/**
 * The VPC across the environment's AZs and the security groups that encode
 * who may talk to whom: injectors → load balancers → MTAs → proxies → MX.
 */
export class NetworkStack extends VolleyStack {
  readonly vpc: ec2.Vpc;
  readonly loadBalancerSecurityGroup: ec2.SecurityGroup;
  readonly mtaSecurityGroup: ec2.SecurityGroup;
  readonly proxySecurityGroup: ec2.SecurityGroup;
  /**
   * With mta.ha: one security group per node of a pair, by its member id
   * (layout.ts pairMemberId), on its instance and on its mirror interface.
   * The two of a pair admit each other on the mirror port and nothing else
   * admits anyone on it.
   */
  readonly mirrorSecurityGroups = new Map<string, ec2.SecurityGroup>();
  /**
   * With mta.inbound: the inbound NLB's group (stacks/constructs/inbound-entry.ts).
   * The internet in on port 25 only; out to the MTAs' inbound and admin ports.
   */
  readonly inboundLoadBalancerSecurityGroup?: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: VolleyStackProps) {
    super(scope, id, props);
    const { network, mta, proxy, ingress } = this.config;

    const flowLogs = new logs.LogGroup(this, 'FlowLogs', { retention: logs.RetentionDays.THREE_MONTHS, removalPolicy: RemovalPolicy.RETAIN });
    // Public subnets hold the proxies' sending ENIs (Elastic IPs) and NAT; the
    // instances themselves live in the private ones. Masks match layout.ts.
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: ec2.IpAddresses.cidr(network.vpcCidr),
      availabilityZones: [...this.config.availabilityZones],
      natGateways: network.natGateways,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: PUBLIC_SUBNET_MASK, mapPublicIpOnLaunch: false },
        { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: PRIVATE_SUBNET_MASK },
      ],
      flowLogs: { all: { destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs), trafficType: ec2.FlowLogTrafficType.ALL } },
    });
    for (const subnet of [...this.vpc.publicSubnets, ...this.vpc.privateSubnets]) acknowledgeLiteralAz(subnet);
    // Bootstrap and asset downloads stay inside AWS's network instead of the NAT.
    this.vpc.addGatewayEndpoint('S3', { service: ec2.GatewayVpcEndpointAwsService.S3 });

    this.loadBalancerSecurityGroup = new ec2.SecurityGroup(this, 'LoadBalancers', {
      vpc: this.vpc,
      description: 'Volley NLBs: injectors in, MTAs out',
      allowAllOutbound: false,
    });
    this.mtaSecurityGroup = new ec2.SecurityGroup(this, 'Mtas', {
      vpc: this.vpc,
      description: 'Volley MTAs: load balancers and injector networks in',
      // Webhooks, S3 and the proxies are all outbound; the sinks' addresses are not known here.
      allowAllOutbound: true,
    });
    this.proxySecurityGroup = new ec2.SecurityGroup(this, 'Proxies', {
      vpc: this.vpc,
      description: 'Volley proxies: only MTAs in, MX servers out',
      // Proxies open SMTP connections to any MX on the internet.
      allowAllOutbound: true,
    });

    const smtp = mta.smtpPorts.map((p) => ec2.Port.tcp(p));
    const injection = [...smtp, ec2.Port.tcp(mta.apiPort)];
    const lbListeners = [...smtp, ec2.Port.tcp(ingress.apiListenerPort)];

    for (const cidr of network.allowedCidrs) {
      for (const port of lbListeners) this.loadBalancerSecurityGroup.addIngressRule(ec2.Peer.ipv4(cidr), port, 'injectors to the load balancers');
      // NLBs preserve the client's address, so forwarded packets reach the MTAs from the injector networks.
      for (const port of injection) this.mtaSecurityGroup.addIngressRule(ec2.Peer.ipv4(cidr), port, 'injectors (client IP preserved by the NLB)');
    }
    for (const port of [...injection, ec2.Port.tcp(mta.adminPort)]) {
      this.mtaSecurityGroup.addIngressRule(this.loadBalancerSecurityGroup, port, 'load balancer traffic and /readyz health checks');
      this.loadBalancerSecurityGroup.addEgressRule(this.mtaSecurityGroup, port, 'to the MTAs');
    }
    // `volley drain` moves a node's queue to the other MTAs' drain endpoint (drain.listen), and only there.
    this.mtaSecurityGroup.addIngressRule(this.mtaSecurityGroup, ec2.Port.tcp(mta.drainPort), 'volley drain between MTAs');
    this.proxySecurityGroup.addIngressRule(this.mtaSecurityGroup, ec2.Port.tcp(proxy.port), 'MTAs to proxies (data and control)');
    if (mta.ha) this.addMirrorLinks();
    if (mta.inbound) this.inboundLoadBalancerSecurityGroup = this.addInboundEntry(mta.inbound.port);
  }

  /**
   * The one rule open to the whole internet: port 25 of the inbound NLB,
   * where receivers' MTAs deliver bounces and feedback reports for the bounce
   * domains' MX. That is acceptable because of what listens behind it: the
   * MTA's inbound listener takes mail only for mta.inbound.domains (550 5.7.1
   * for any other recipient: never a relay), offers no AUTH (nothing to
   * guess), turns a message into events only (it never queues mail for
   * delivery), and keeps at most inbound.max_message_size per message and
   * unmatched_max of unmatched reports. The MTAs admit the NLB's group, not
   * the internet, and on the inbound and admin ports only: nothing reaches
   * injection, the API, the drain or admin endpoints from outside. Naming the
   * NLB's group is enough although the NLB preserves the client's address:
   * "Referencing the security group associated with your Network Load
   * Balancer in the security groups associated with your targets ensures
   * that your targets accept traffic from your Network Load Balancer even if
   * you enable client IP preservation" (ELB guide, "Update the security
   * groups for your Network Load Balancer").
   */
  private addInboundEntry(inboundPort: number): ec2.SecurityGroup {
    const { mta } = this.config;
    const group = new ec2.SecurityGroup(this, 'InboundLoadBalancer', {
      vpc: this.vpc,
      description: 'Volley inbound NLB: bounces and feedback reports from the internet on 25, to the MTAs inbound port',
      allowAllOutbound: false,
    });
    group.addIngressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(INBOUND_LISTEN_PORT), 'bounces and feedback reports from any MTA on the internet');
    Validations.of(group).acknowledge({
      id: 'AwsSolutions-EC23',
      reason: 'The bounce domains MX: any MTA on the internet delivers DSNs and ARF reports here, on port 25 only. The listener behind it takes mail for its own domains only (no relay), has no AUTH, and only makes events.',
    });
    for (const [port, why] of [[inboundPort, 'bounces and feedback reports through the inbound NLB'], [mta.adminPort, '/readyz health checks of the inbound NLB']] as const) {
      this.mtaSecurityGroup.addIngressRule(group, ec2.Port.tcp(port), why);
      group.addEgressRule(this.mtaSecurityGroup, ec2.Port.tcp(port), 'to the MTAs');
    }
    return group;
  }

  /**
   * HA pairs: a security group per node, each admitting only its peer's on
   * the mirror port (rules that name groups, not addresses). A node's group
   * is on its instance too, because the peer dials from its instance's own
   * address (the kernel's route to another AZ's subnet leaves by the
   * primary interface) and lands on the fixed IP of this node's mirror
   * interface (layout.ts mtaPairs).
   */
  private addMirrorLinks(): void {
    const { mta } = this.config;
    const port = ec2.Port.tcp(mta.mirrorPort as number);
    for (const pair of mtaPairs(this.config.name, this.config.network.vpcCidr, this.config.availabilityZones, mta.slotsPerAz)) {
      const [a, b] = [pair.a, pair.b].map((member) => {
        const group = new ec2.SecurityGroup(this, `Mirror-${member.memberId}`, {
          vpc: this.vpc,
          description: `Volley mirror of ${member.memberId}: the other node of its pair in, on the mirror port only`,
          // Outbound is the MTA group's (all); this group only names the node for its peer's rule.
          allowAllOutbound: false,
        });
        this.mirrorSecurityGroups.set(member.memberId, group);
        return group;
      }) as [ec2.SecurityGroup, ec2.SecurityGroup];
      a.addIngressRule(b, port, `volley mirror from ${pair.b.memberId}`);
      b.addIngressRule(a, port, `volley mirror from ${pair.a.memberId}`);
    }
  }
}
