// The inbound load balancer as synthesised for an environment that declares
// mta.inbound (the rehearsal's, and prod given one): an internet-facing NLB of
// its own, port 25 to the MTAs' inbound port, health-checked on /readyz, its
// DNS name an output, every MTA slot registered; none without mta.inbound.
import { loadEnvironment, type EnvironmentConfig } from '../../../stacks/environments';
import { IngressStack } from '../../../stacks/ingress-stack';
import { build, inboundEnvironment, readyzTargetGroup, REPO_ROOT, resources, template } from '../helpers';

describe.each([['rehearsal', () => loadEnvironment('rehearsal', REPO_ROOT)], ['prod', () => inboundEnvironment('prod')]])('%s with mta.inbound', (envName, environment) => {
  const config = environment();
  const inbound = config.mta.inbound as NonNullable<EnvironmentConfig['mta']['inbound']>;
  const { stacks } = build(envName, { config, nag: false });
  const t = template(stacks.ingress);
  const lbs = resources(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer');
  const inboundLb = Object.entries(lbs).filter(([id]) => id.startsWith('Inbound'));

  test('one more NLB, internet-facing in the public subnets, behind its own security group; the injection NLBs stay as configured', () => {
    expect(Object.keys(lbs)).toHaveLength(config.ingress.loadBalancers.length + 1);
    expect(inboundLb).toHaveLength(1);
    const [, lb] = inboundLb[0] as [string, { Properties?: Record<string, unknown> }];
    expect(lb.Properties).toMatchObject({ Type: 'network', Scheme: 'internet-facing' });
    const publicSubnets = Object.keys(resources(template(stacks.network), 'AWS::EC2::Subnet')).filter((id) => id.includes('public'));
    expect(JSON.stringify(lb.Properties?.Subnets)).toContain('public');
    expect((lb.Properties?.Subnets as unknown[]).length).toBe(publicSubnets.length);
    expect(JSON.stringify(lb.Properties?.SecurityGroups)).toContain('InboundLoadBalancer');
    for (const [id, other] of Object.entries(lbs).filter(([id]) => !id.startsWith('Inbound'))) {
      expect({ id, scheme: other.Properties?.Scheme }).toEqual({ id, scheme: config.ingress.internetFacing ? 'internet-facing' : 'internal' });
    }
  });

  test('a TCP listener on 25 to its own target group on the MTAs\' inbound port, health-checked on /readyz, client IP preserved', () => {
    const listeners = Object.values(resources(t, 'AWS::ElasticLoadBalancingV2::Listener')).filter((l) => JSON.stringify(l.Properties?.LoadBalancerArn).includes(inboundLb[0]?.[0] as string));
    expect(listeners.map((l) => `${l.Properties?.Protocol}:${l.Properties?.Port}`)).toEqual(['TCP:25']);
    const groupId = JSON.stringify((listeners[0]?.Properties?.DefaultActions as { TargetGroupArn: unknown }[])[0]?.TargetGroupArn);
    const groups = Object.entries(resources(t, 'AWS::ElasticLoadBalancingV2::TargetGroup')).filter(([id]) => groupId.includes(id));
    expect(groups).toHaveLength(1);
    const group = groups[0]?.[1];
    expect(group?.Properties).toMatchObject({ Port: inbound.port, ...readyzTargetGroup(config.mta.adminPort) });
    const attributes = Object.fromEntries((group?.Properties?.TargetGroupAttributes as { Key: string; Value: string }[]).map((a) => [a.Key, a.Value]));
    expect(attributes['preserve_client_ip.enabled']).toBe('true');
    // No other target group forwards to the inbound port.
    expect(Object.values(resources(t, 'AWS::ElasticLoadBalancingV2::TargetGroup')).filter((g) => g.Properties?.Port === inbound.port)).toHaveLength(1);
  });

  test('every MTA slot registers in the inbound target group', () => {
    const asgs = Object.values(resources(template(stacks.mta), 'AWS::AutoScaling::AutoScalingGroup'));
    expect(asgs.length).toBeGreaterThan(0);
    for (const asg of asgs) expect(JSON.stringify(asg.Properties?.TargetGroupARNs)).toMatch(/InboundMtas/);
  });

  test('its DNS name is the stack output InboundDnsName, which names the bounce domains', () => {
    const outputs = t.findOutputs('InboundDnsName');
    expect(Object.keys(outputs)).toEqual(['InboundDnsName']);
    expect(JSON.stringify(outputs.InboundDnsName?.Value)).toContain('DNSName');
    for (const d of inbound.domains) expect(String(outputs.InboundDnsName?.Description)).toContain(d);
  });
});

test.each(['dev', 'staging', 'prod'])('%s declares no mta.inbound: no inbound NLB, target group, security group or output', (envName) => {
  const { stacks } = build(envName, { nag: false });
  const ingress = template(stacks.ingress);
  expect(Object.keys(resources(ingress, 'AWS::ElasticLoadBalancingV2::LoadBalancer')).filter((id) => id.startsWith('Inbound'))).toEqual([]);
  expect(Object.keys(resources(ingress, 'AWS::ElasticLoadBalancingV2::TargetGroup')).filter((id) => id.startsWith('Inbound'))).toEqual([]);
  expect(Object.keys(ingress.findOutputs('*'))).not.toContain('InboundDnsName');
  expect(Object.keys(resources(template(stacks.network), 'AWS::EC2::SecurityGroup')).filter((id) => id.startsWith('InboundLoadBalancer'))).toEqual([]);
  expect(stacks.ingress.inbound).toBeUndefined();
});

test('an Ingress stack given mta.inbound without the network stack\'s inbound group is a wiring error with a code, not a silent NLB without one', () => {
  const { app, stacks, config } = build('rehearsal', { nag: false });
  expect(() => new IngressStack(app, 'Volley-rehearsal-Unwired', { config, vpc: stacks.network.vpc, securityGroup: stacks.network.loadBalancerSecurityGroup })).toThrow(
    expect.objectContaining({ code: 'ESTACKWIRING', message: expect.stringMatching(/mta\.inbound needs the network stack's inbound load balancer security group/) }),
  );
});
