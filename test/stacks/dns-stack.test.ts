import { build, inboundEnvironment, resources, template } from './helpers';

describe.each(['dev', 'prod'])('%s DNS', (envName) => {
  const { config, stacks } = build(envName);
  const t = template(stacks.dns);
  const records = Object.values(resources(t, 'AWS::Route53::RecordSet'));

  test('one weighted alias record per load balancer and name, evaluating target health; no MX without mta.inbound', () => {
    expect(records).toHaveLength(config.ingress.loadBalancers.length * 2);
    expect(records.filter((r) => r.Properties?.Type === 'MX')).toEqual([]);
    const seen = records.map((r) => `${r.Properties?.Name} ${r.Properties?.SetIdentifier} ${r.Properties?.Weight}`).sort();
    const expected = config.ingress.loadBalancers.flatMap((lb) => [config.dns.smtpRecordName, config.dns.apiRecordName].map((n) => `${n}. ${lb.name} ${lb.weight}`)).sort();
    expect(seen).toEqual(expected);
    for (const r of records) {
      expect(r.Properties).toMatchObject({ Type: 'A', HostedZoneId: config.dns.hostedZoneId, AliasTarget: { EvaluateTargetHealth: true } });
      expect(r.Properties?.TTL).toBeUndefined();
    }
  });

  test('each load balancer\'s records alias that load balancer', () => {
    for (const lb of config.ingress.loadBalancers) {
      const targets = records.filter((r) => r.Properties?.SetIdentifier === lb.name).map((r) => JSON.stringify((r.Properties?.AliasTarget as { DNSName: unknown }).DNSName));
      expect(new Set(targets).size).toBe(1);
      expect(targets[0]).toContain(`Nlb${lb.name.replace('-', '')}`);
    }
  });
});

test('with mta.inbound: an MX record for each bounce domain inside the zone, pointing at the inbound NLB; none for a domain outside it', () => {
  const config = inboundEnvironment('prod');
  const t = template(build('prod', { config, nag: false }).stacks.dns);
  const mx = Object.values(resources(t, 'AWS::Route53::RecordSet')).filter((r) => r.Properties?.Type === 'MX');
  expect(mx.map((r) => r.Properties?.Name)).toEqual([`bounces.${config.dns.zoneName}.`]);
  expect(mx[0]?.Properties).toMatchObject({ HostedZoneId: config.dns.hostedZoneId, TTL: '300' });
  const value = JSON.stringify(mx[0]?.Properties?.ResourceRecords);
  expect(value).toContain('10 ');
  expect(value).toMatch(/InboundNlb[A-Za-z0-9]*DNSName/);
});
