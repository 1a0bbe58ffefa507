import * as route53 from 'aws-cdk-lib/aws-route53';
import * as targets from 'aws-cdk-lib/aws-route53-targets';
import type { Construct } from 'constructs';
import { Duration } from 'aws-cdk-lib';
import type { InboundEntry } from './constructs/inbound-entry';
import type { LoadBalancerEndpoint } from './ingress-stack';
import { VolleyStack, VolleyStackProps } from './volley-stack';

export interface DnsStackProps extends VolleyStackProps {
  readonly endpoints: readonly LoadBalancerEndpoint[];
  /** With mta.inbound: the NLB the bounce domains' MX records point at. */
  readonly inbound?: InboundEntry;
}

/**
 * Weighted alias records, one per load balancer and name, with target health
 * evaluated: Route 53 stops answering with a load balancer whose targets are
 * unhealthy, and `volley dns weight` moves one out of rotation by hand. With
 * mta.inbound, the MX records of the bounce domains inside the zone.
 */
export class DnsStack extends VolleyStack {
  constructor(scope: Construct, id: string, props: DnsStackProps) {
    super(scope, id, props);
    const { dns } = this.config;
    const zone = route53.HostedZone.fromHostedZoneAttributes(this, 'Zone', { hostedZoneId: dns.hostedZoneId, zoneName: dns.zoneName });

    for (const endpoint of props.endpoints) {
      const target = route53.RecordTarget.fromAlias(new targets.LoadBalancerTarget(endpoint.loadBalancer, { evaluateTargetHealth: true }));
      for (const [purpose, recordName] of [['Smtp', dns.smtpRecordName], ['Api', dns.apiRecordName]] as const) {
        new route53.ARecord(this, `${purpose}-${endpoint.config.name}`, {
          zone,
          recordName: `${recordName}.`,
          target,
          weight: endpoint.config.weight,
          // The set identifier is the load balancer's name: the handle `volley dns weight` takes.
          setIdentifier: endpoint.config.name,
        });
      }
    }

    // The MX of each bounce domain inside this zone; one outside it (another zone, another DNS provider) is
    // the operator's to add, pointing at the Ingress stack's InboundDnsName output (README).
    const inboundDomains = this.config.mta.inbound?.domains ?? [];
    if (props.inbound) {
      for (const domain of inboundDomains.filter((d) => d === dns.zoneName || d.endsWith(`.${dns.zoneName}`))) {
        new route53.MxRecord(this, `InboundMx-${domain}`, {
          zone,
          recordName: `${domain}.`,
          values: [{ priority: 10, hostName: props.inbound.loadBalancer.loadBalancerDnsName }],
          ttl: Duration.minutes(5),
        });
      }
    }
  }
}
