import { planSubnets } from '../../stacks/environments/layout';
import { build, resources, template } from './helpers';

describe.each(['dev', 'prod'])('%s network', (envName) => {
  const { config, stacks } = build(envName);
  const t = template(stacks.network);
  const ingress = Object.values(resources(t, 'AWS::EC2::SecurityGroupIngress')).map((r) => r.Properties ?? {});
  const groups = resources(t, 'AWS::EC2::SecurityGroup');
  const groupId = (prefix: string): string => Object.keys(groups).find((id) => id.startsWith(prefix)) as string;
  const ref = (prefix: string) => ({ 'Fn::GetAtt': [groupId(prefix), 'GroupId'] });

  test('subnets span the configured AZs with the CIDRs config validation planned', () => {
    const subnets = Object.values(resources(t, 'AWS::EC2::Subnet')).map((s) => `${s.Properties?.AvailabilityZone} ${s.Properties?.CidrBlock}`).sort();
    const planned = planSubnets(config.network.vpcCidr, config.availabilityZones).flatMap((p) => [`${p.availabilityZone} ${p.publicCidr}`, `${p.availabilityZone} ${p.privateCidr}`]).sort();
    expect(subnets).toEqual(planned);
    t.resourceCountIs('AWS::EC2::NatGateway', config.network.natGateways);
    t.resourceCountIs('AWS::EC2::FlowLog', 1);
  });

  test('only MTAs reach the proxies, and only on the proxy port', () => {
    const proxyIn = [...ingress, ...((groups[groupId('Proxies')]?.Properties?.SecurityGroupIngress as object[]) ?? [])].filter(
      (r) => JSON.stringify((r as { GroupId?: unknown }).GroupId) === JSON.stringify(ref('Proxies')),
    );
    expect(proxyIn).toEqual([expect.objectContaining({ SourceSecurityGroupId: ref('Mtas'), FromPort: config.proxy.port, ToPort: config.proxy.port, IpProtocol: 'tcp' })]);
  });

  test('MTAs are reached only by the load balancers, the allowed CIDRs, and other MTAs (drain)', () => {
    const mtaIn = ingress.filter((r) => JSON.stringify(r.GroupId) === JSON.stringify(ref('Mtas')));
    for (const rule of mtaIn) {
      const from = rule.CidrIp ?? rule.SourceSecurityGroupId;
      const allowed = [...config.network.allowedCidrs, ref('LoadBalancers'), ref('Mtas')].map((x) => JSON.stringify(x));
      expect(allowed).toContain(JSON.stringify(from));
    }
    const fromLb = mtaIn.filter((r) => JSON.stringify(r.SourceSecurityGroupId) === JSON.stringify(ref('LoadBalancers'))).map((r) => r.FromPort);
    expect(fromLb.sort()).toEqual([...config.mta.smtpPorts, config.mta.apiPort, config.mta.adminPort].sort());
    // The admin API (and /readyz) is open to the load balancers only.
    expect(mtaIn.filter((r) => r.FromPort === config.mta.adminPort).map((r) => JSON.stringify(r.SourceSecurityGroupId))).toEqual([JSON.stringify(ref('LoadBalancers'))]);
  });

  test('MTAs reach each other on the drain port, and on nothing else', () => {
    const mtaIn = ingress.filter((r) => JSON.stringify(r.GroupId) === JSON.stringify(ref('Mtas')));
    const fromMtas = mtaIn.filter((r) => JSON.stringify(r.SourceSecurityGroupId) === JSON.stringify(ref('Mtas')));
    expect(fromMtas).toEqual([expect.objectContaining({ FromPort: config.mta.drainPort, ToPort: config.mta.drainPort, IpProtocol: 'tcp' })]);
    // Nobody else reaches the drain endpoint: not the load balancers, not the injector networks.
    expect(mtaIn.filter((r) => r.FromPort === config.mta.drainPort)).toHaveLength(1);
  });

  test('nothing is open to the whole internet', () => {
    const inline = Object.values(groups).flatMap((g) => (g.Properties?.SecurityGroupIngress as { CidrIp?: string }[]) ?? []);
    for (const rule of [...ingress, ...inline]) expect((rule as { CidrIp?: string }).CidrIp).not.toBe('0.0.0.0/0');
  });
});
