import { build, readyzTargetGroup, resources, template } from './helpers';

describe.each(['dev', 'prod'])('%s ingress', (envName) => {
  const { config, stacks } = build(envName);
  const t = template(stacks.ingress);

  test('one NLB per configured load balancer, cross-zone, behind the load balancer security group', () => {
    const lbs = Object.values(resources(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer'));
    expect(lbs).toHaveLength(config.ingress.loadBalancers.length);
    for (const lb of lbs) {
      expect(lb.Properties).toMatchObject({ Type: 'network', Scheme: config.ingress.internetFacing ? 'internet-facing' : 'internal' });
      expect(JSON.stringify(lb.Properties?.LoadBalancerAttributes)).toContain('"load_balancing.cross_zone.enabled","Value":"true"');
    }
  });

  test('TCP listeners on 25, 587 and the API port, each to its own target group', () => {
    const listeners = Object.values(resources(t, 'AWS::ElasticLoadBalancingV2::Listener'));
    const ports = listeners.map((l) => `${l.Properties?.Protocol}:${l.Properties?.Port}`).sort();
    const perLb = ['TCP:25', 'TCP:587', `TCP:${config.ingress.apiListenerPort}`];
    expect(ports).toEqual(config.ingress.loadBalancers.flatMap(() => perLb).sort());
  });

  test('target groups health-check /readyz on the admin port and wait out the longest SMTP transaction', () => {
    const groups = Object.values(resources(t, 'AWS::ElasticLoadBalancingV2::TargetGroup'));
    expect(groups.map((g) => g.Properties?.Port).sort()).toEqual(config.ingress.loadBalancers.flatMap(() => [25, 587, config.mta.apiPort]).sort());
    for (const g of groups) {
      expect(g.Properties).toMatchObject(readyzTargetGroup(config.mta.adminPort));
      const attributes = Object.fromEntries((g.Properties?.TargetGroupAttributes as { Key: string; Value: string }[]).map((a) => [a.Key, a.Value]));
      expect(attributes['deregistration_delay.timeout_seconds']).toBe(String(config.ingress.deregistrationDelaySeconds));
      expect(attributes['proxy_protocol_v2.enabled']).toBe('false');
      expect(attributes['preserve_client_ip.enabled']).toBe('true');
    }
  });

  test('prod lets a transaction run its full 10 minutes before a target leaves', () => {
    if (envName === 'prod') expect(config.ingress.deregistrationDelaySeconds).toBe(600);
    else expect(config.ingress.deregistrationDelaySeconds).toBeLessThanOrEqual(600);
  });
});
