import { cidrContains, parseCidr, parseIpv4 } from '../../stacks/environments/ip';
import { mirrorBlock, mtaPairs, planSubnets } from '../../stacks/environments/layout';
import { build, haEnvironment, inboundEnvironment, resources, template } from './helpers';

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

describe('HA pairs (mta.ha): the mirror port', () => {
  const config = haEnvironment('prod');
  const { stacks } = build('prod', { config, nag: false });
  const t = template(stacks.network);
  const ingress = Object.values(resources(t, 'AWS::EC2::SecurityGroupIngress')).map((r) => r.Properties ?? {});
  const groups = resources(t, 'AWS::EC2::SecurityGroup');
  const pairs = mtaPairs(config.name, config.network.vpcCidr, config.availabilityZones, config.mta.slotsPerAz);
  const groupOf = (memberId: string): string => Object.entries(groups).find(([, g]) => String(g.Properties?.GroupDescription).startsWith(`Volley mirror of ${memberId}:`))?.[0] as string;
  const ref = (id: string) => JSON.stringify({ 'Fn::GetAtt': [id, 'GroupId'] });

  test('each node\'s mirror group admits its peer\'s group, on the mirror port, and nothing else; no address range anywhere', () => {
    for (const pair of pairs) {
      for (const [self, peer] of [[pair.a, pair.b], [pair.b, pair.a]] as const) {
        const own = ingress.filter((r) => JSON.stringify(r.GroupId) === ref(groupOf(self.memberId)));
        expect(own).toEqual([expect.objectContaining({ SourceSecurityGroupId: JSON.parse(ref(groupOf(peer.memberId))), FromPort: 7627, ToPort: 7627, IpProtocol: 'tcp' })]);
        expect(groups[groupOf(self.memberId)]?.Properties?.SecurityGroupIngress).toBeUndefined();
      }
    }
    // The shared MTA group does not open the mirror port: one node can reach only its own peer's mirror.
    expect(ingress.filter((r) => r.FromPort === 7627)).toHaveLength(pairs.length * 2);
    expect(ingress.filter((r) => r.FromPort === 7627 && r.CidrIp !== undefined)).toEqual([]);
  });

  test('the mirror IPs sit in the mirror block at the start of their AZ\'s private subnet, past the four addresses AWS keeps, none twice', () => {
    const plan = planSubnets(config.network.vpcCidr, config.availabilityZones);
    const ips = pairs.flatMap((p) => [p.a, p.b]);
    expect(new Set(ips.map((m) => m.mirrorIp)).size).toBe(ips.length);
    for (const m of ips) {
      const block = parseCidr(mirrorBlock(plan.find((p) => p.availabilityZone === m.availabilityZone)?.privateCidr as string));
      expect(block && cidrContains(block, parseIpv4(m.mirrorIp) as number)).toBe(true);
      expect((parseIpv4(m.mirrorIp) as number) - (block?.base ?? 0)).toBeGreaterThanOrEqual(4);
    }
  });

  test('an environment without pairs has no mirror group', () => {
    const single = template(build('prod', { nag: false }).stacks.network);
    expect(Object.values(resources(single, 'AWS::EC2::SecurityGroup')).filter((g) => String(g.Properties?.GroupDescription).startsWith('Volley mirror'))).toEqual([]);
  });
});

test('the largest tier (20 slots per AZ) fits every pair\'s two mirror IPs in the mirror blocks, none twice', () => {
  const azs = ['us-east-1a', 'us-east-1b', 'us-east-1c'];
  const pairs = mtaPairs('prod', '10.60.0.0/16', azs, 20);
  const plan = planSubnets('10.60.0.0/16', azs);
  const ips = pairs.flatMap((p) => [p.a, p.b]);
  expect(new Set(ips.map((m) => m.mirrorIp)).size).toBe(120);
  for (const m of ips) {
    const block = parseCidr(mirrorBlock(plan.find((p) => p.availabilityZone === m.availabilityZone)?.privateCidr as string)) as { base: number; prefix: number };
    expect(cidrContains(block, parseIpv4(m.mirrorIp) as number)).toBe(true);
  }
});

describe('the inbound listener (mta.inbound): the internet reaches port 25 of the inbound NLB, and through it only the MTAs\' inbound port', () => {
  const config = inboundEnvironment('prod');
  const inbound = config.mta.inbound as { port: number };
  const t = template(build('prod', { config, nag: false }).stacks.network);
  const ingress = Object.values(resources(t, 'AWS::EC2::SecurityGroupIngress')).map((r) => r.Properties ?? {});
  const egress = Object.values(resources(t, 'AWS::EC2::SecurityGroupEgress')).map((r) => r.Properties ?? {});
  const groups = resources(t, 'AWS::EC2::SecurityGroup');
  const groupId = (prefix: string): string => Object.keys(groups).find((id) => id.startsWith(prefix)) as string;
  const ref = (prefix: string) => JSON.stringify({ 'Fn::GetAtt': [groupId(prefix), 'GroupId'] });
  const inline = (prefix: string) => ((groups[groupId(prefix)]?.Properties?.SecurityGroupIngress as Record<string, unknown>[]) ?? []);

  test('the inbound NLB\'s group admits the whole internet on 25 and on nothing else', () => {
    const own = [...inline('InboundLoadBalancer'), ...ingress.filter((r) => JSON.stringify(r.GroupId) === ref('InboundLoadBalancer'))];
    expect(own).toEqual([expect.objectContaining({ CidrIp: '0.0.0.0/0', FromPort: 25, ToPort: 25, IpProtocol: 'tcp' })]);
  });

  test('the MTAs admit that group on the inbound port and /readyz\'s admin port only, and it may send nowhere else', () => {
    const fromInbound = ingress.filter((r) => JSON.stringify(r.GroupId) === ref('Mtas') && JSON.stringify(r.SourceSecurityGroupId) === ref('InboundLoadBalancer'));
    expect(fromInbound.map((r) => `${r.FromPort}-${r.ToPort}`).sort()).toEqual([`${config.mta.adminPort}-${config.mta.adminPort}`, `${inbound.port}-${inbound.port}`].sort());
    const out = egress.filter((r) => JSON.stringify(r.GroupId) === ref('InboundLoadBalancer'));
    expect(out.map((r) => `${JSON.stringify(r.DestinationSecurityGroupId) === ref('Mtas')}:${r.FromPort}`).sort()).toEqual([`true:${config.mta.adminPort}`, `true:${inbound.port}`].sort());
    // No inline egress either (allowAllOutbound false: CDK's placeholder goes once real egress rules exist).
    expect(groups[groupId('InboundLoadBalancer')]?.Properties?.SecurityGroupEgress).toBeUndefined();
  });

  test('nothing else is open to the whole internet: not the MTAs (they admit the NLB\'s group), not the injection load balancers', () => {
    const open = [...ingress, ...Object.values(groups).flatMap((g) => (g.Properties?.SecurityGroupIngress as Record<string, unknown>[]) ?? [])].filter((r) => r.CidrIp === '0.0.0.0/0');
    expect(open).toEqual([expect.objectContaining({ FromPort: 25, ToPort: 25 })]);
    expect(ingress.filter((r) => r.FromPort === inbound.port).map((r) => JSON.stringify(r.SourceSecurityGroupId))).toEqual([ref('InboundLoadBalancer')]);
  });
});
