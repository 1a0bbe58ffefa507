import { build, resources, template } from './helpers';

describe.each(['dev', 'prod'])('%s proxy tier', (envName) => {
  const { config, stacks } = build(envName);
  const t = template(stacks.proxy);
  const enis = Object.values(resources(t, 'AWS::EC2::NetworkInterface'));
  const eips = Object.values(resources(t, 'AWS::EC2::EIP'));
  const associations = Object.values(resources(t, 'AWS::EC2::EIPAssociation'));
  const groups = resources(t, 'AWS::AutoScaling::AutoScalingGroup');

  test('one group of one proxy instance per configured proxy, of the configured type', () => {
    expect(Object.keys(groups)).toHaveLength(config.proxy.proxies.length);
    for (const g of Object.values(groups)) expect(g.Properties).toMatchObject({ MinSize: '1', MaxSize: '1' });
    for (const lt of Object.values(resources(t, 'AWS::EC2::LaunchTemplate'))) {
      expect(lt.Properties).toMatchObject({ LaunchTemplateData: { InstanceType: config.proxy.instanceType } });
    }
    for (const g of Object.values(groups)) {
      expect(g.UpdatePolicy).toMatchObject({ AutoScalingRollingUpdate: { MaxBatchSize: 1, MinInstancesInService: 0, WaitOnResourceSignals: true } });
    }
  });

  test('a retained standalone ENI per proxy carries exactly its sending IPs as secondaries', () => {
    expect(enis).toHaveLength(config.proxy.proxies.length);
    for (const proxy of config.proxy.proxies) {
      const eni = enis.find((e) => JSON.stringify(e.Properties?.Tags).includes(`"${config.name}-${proxy.name}"`));
      expect(eni?.DeletionPolicy).toBe('Retain');
      expect(eni?.Properties?.PrivateIpAddresses).toEqual([
        { PrivateIpAddress: proxy.interfaceIp, Primary: true },
        ...proxy.sendingIps.map((ip) => ({ PrivateIpAddress: ip, Primary: false })),
      ]);
    }
  });

  test('one retained Elastic IP per sending IP, associated to that private IP', () => {
    const sendingIps = config.proxy.proxies.flatMap((p) => p.sendingIps);
    expect(eips).toHaveLength(sendingIps.length);
    for (const eip of eips) expect(eip.DeletionPolicy).toBe('Retain');
    expect(associations.map((a) => a.Properties?.PrivateIpAddress).sort()).toEqual([...sendingIps].sort());
    const allocationIds = associations.map((a) => JSON.stringify(a.Properties?.AllocationId));
    expect(new Set(allocationIds).size).toBe(sendingIps.length);
  });

  test('each proxy may attach only its own tagged ENI', () => {
    for (const policy of Object.values(resources(t, 'AWS::IAM::Policy'))) {
      const statements = (policy.Properties?.PolicyDocument as { Statement: Record<string, unknown>[] }).Statement;
      const attach = statements.filter((s) => s.Action === 'ec2:AttachNetworkInterface');
      expect(attach).toHaveLength(2);
      for (const s of attach) expect(Object.keys((s.Condition as { StringEquals: object }).StringEquals)).toEqual(['aws:ResourceTag/volley:slot']);
      expect(JSON.stringify(attach)).toContain('network-interface/');
      expect(statements.some((s) => JSON.stringify(s.Action).includes('AttachVolume'))).toBe(false);
    }
  });
});
