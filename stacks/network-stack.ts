import { RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { acknowledgeLiteralAz } from './constructs/literal-az';
import { PRIVATE_SUBNET_MASK, PUBLIC_SUBNET_MASK } from './environments/layout';
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
  }
}
