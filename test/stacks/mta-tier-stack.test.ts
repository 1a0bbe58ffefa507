import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { parseMirrorConfig } from '../../runtime/mirror/config';
import { loadEnvironment, validateEnvironment } from '../../stacks/environments';
import { mtaPairs } from '../../stacks/environments/layout';
import { mtaSlotId } from '../../stacks/mta-tier-stack';
import { build, haEnvironment, REPO_ROOT, resources, template } from './helpers';

describe.each([
  ['dev', 'c6in.large', 2],
  ['staging', 'c6in.4xlarge', 2],
  ['prod', 'c6in.32xlarge', 6],
])('%s MTA tier', (envName, instanceType, slots) => {
  const { config, stacks } = build(envName);
  const t = template(stacks.mta);
  const network = template(stacks.network);
  const groups = resources(t, 'AWS::AutoScaling::AutoScalingGroup');
  const volumes = resources(t, 'AWS::EC2::Volume');
  const subnetAz = new Map(Object.entries(resources(network, 'AWS::EC2::Subnet')).map(([id, r]) => [id, r.Properties?.AvailabilityZone]));

  test(`${slots} slots of ${instanceType}, one group of exactly one instance each`, () => {
    expect(Object.keys(groups)).toHaveLength(slots);
    for (const group of Object.values(groups)) {
      expect(group.Properties).toMatchObject({ MinSize: '1', MaxSize: '1' });
    }
    const templates = resources(t, 'AWS::EC2::LaunchTemplate');
    expect(Object.keys(templates)).toHaveLength(slots);
    for (const lt of Object.values(templates)) {
      expect(lt.Properties).toMatchObject({
        LaunchTemplateData: {
          InstanceType: instanceType,
          ImageId: config.amiId,
          MetadataOptions: { HttpTokens: 'required' },
          InstanceInitiatedShutdownBehavior: 'terminate',
        },
      });
    }
  });

  test('the user data installs Node 24, the runtime the bundle is built for and measured on', () => {
    const templates = Object.values(resources(t, 'AWS::EC2::LaunchTemplate'));
    expect(templates.length).toBeGreaterThan(0);
    for (const lt of templates) {
      const userData = JSON.stringify((lt.Properties?.LaunchTemplateData as { UserData?: unknown }).UserData);
      expect(userData).toContain('dnf install -y -q nodejs24 ');
    }
  });

  test('one retained, encrypted gp3 volume per slot, tagged with the slot, in the AZ of the slot\'s subnet', () => {
    expect(Object.keys(volumes)).toHaveLength(slots);
    const volumeAzBySlot = new Map<string, unknown>();
    for (const v of Object.values(volumes)) {
      expect(v.DeletionPolicy).toBe('Retain');
      expect(v.Properties).toMatchObject({
        Encrypted: true,
        VolumeType: 'gp3',
        Size: config.mta.volume.sizeGiB,
        Iops: config.mta.volume.iops,
        Throughput: config.mta.volume.throughputMiBps,
      });
      const slot = (v.Properties?.Tags as { Key: string; Value: string }[]).find((tag) => tag.Key === 'volley:slot')?.Value;
      volumeAzBySlot.set(slot as string, v.Properties?.AvailabilityZone);
    }
    const expectedSlots = config.availabilityZones.flatMap((az) => Array.from({ length: config.mta.slotsPerAz }, (_, i) => mtaSlotId(config.name, az, i + 1)));
    expect([...volumeAzBySlot.keys()].sort()).toEqual(expectedSlots.sort());

    for (const group of Object.values(groups)) {
      const slot = (group.Properties?.Tags as { Key: string; Value: string }[]).find((tag) => tag.Key === 'volley:slot')?.Value as string;
      const subnets = group.Properties?.VPCZoneIdentifier as { 'Fn::ImportValue': string }[];
      expect(subnets).toHaveLength(1);
      // The subnet comes from the network stack: resolve its export back to the subnet's AZ.
      const exportName = subnets[0]?.['Fn::ImportValue'] as string;
      const subnetId = [...subnetAz.keys()].find((id) => exportName.includes(id));
      expect(subnetId).toBeDefined();
      expect(subnetAz.get(subnetId as string)).toBe(volumeAzBySlot.get(slot));
    }
  });

  test('replacement terminates before launching and waits for the new instance\'s signal', () => {
    for (const group of Object.values(groups)) {
      expect(group.UpdatePolicy).toMatchObject({
        AutoScalingRollingUpdate: { MaxBatchSize: 1, MinInstancesInService: 0, WaitOnResourceSignals: true, PauseTime: `PT${config.rollout.readyTimeoutMinutes}M` },
      });
      expect(group.CreationPolicy).toEqual({ ResourceSignal: { Count: 1, Timeout: `PT${config.rollout.readyTimeoutMinutes}M` } });
    }
  });

  test('slots are chained so CloudFormation never replaces two at once', () => {
    const ids = Object.keys(groups);
    const roots = ids.filter((id) => !(groups[id]?.DependsOn ?? []).some((d) => ids.includes(d)));
    expect(roots).toHaveLength(1);
    // Walk the chain from its root: it must visit every group exactly once.
    const seen = [roots[0] as string];
    for (;;) {
      const next = ids.filter((id) => (groups[id]?.DependsOn ?? []).includes(seen[seen.length - 1] as string));
      if (next.length === 0) break;
      expect(next).toHaveLength(1);
      seen.push(next[0] as string);
    }
    expect(seen.sort()).toEqual(ids.sort());
  });

  test('each slot may attach only its own tagged volume, to its own tagged instance', () => {
    const policies = Object.values(resources(t, 'AWS::IAM::Policy'));
    expect(policies).toHaveLength(slots);
    for (const policy of policies) {
      const statements = (policy.Properties?.PolicyDocument as { Statement: Record<string, unknown>[] }).Statement;
      const attach = statements.filter((s) => s.Action === 'ec2:AttachVolume');
      expect(attach).toHaveLength(2);
      const slotTags = attach.map((s) => (s.Condition as { StringEquals: Record<string, string> }).StringEquals['aws:ResourceTag/volley:slot']);
      expect(new Set(slotTags).size).toBe(1);
      expect(JSON.stringify(attach)).toMatch(/volume\//);
      expect(JSON.stringify(attach)).toMatch(/instance\/\*/);
      // Writes to S3 only under this slot's prefix.
      const writes = statements.filter((s) => JSON.stringify(s.Action).includes('s3:Put'));
      expect(writes).toHaveLength(1);
      expect(JSON.stringify(writes[0]?.Resource)).toContain(`/mta/${envName}/${slotTags[0]}/*`);
      expect(statements.filter((s) => s.Resource === '*').map((s) => s.Action)).toEqual(['ec2:DescribeVolumes']);
    }
  });

  test('targets of every load balancer\'s target groups', () => {
    const targetGroupCount = config.ingress.loadBalancers.length * (config.mta.smtpPorts.length + 1);
    for (const group of Object.values(groups)) {
      expect(group.Properties?.TargetGroupARNs).toHaveLength(targetGroupCount);
      expect(group.Properties).toMatchObject({ HealthCheckType: 'ELB' });
    }
    t.hasResourceProperties('AWS::SSM::Parameter', { Name: `/volley/${config.name}/mta/config-url` });
    t.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', { NotificationConfigurations: Match.arrayWith([Match.objectLike({ TopicARN: Match.anyValue() })]) });
  });
});

describe('a removed slot whose volume is retained', () => {
  const warnings = (envName: string, mutate: (config: { mta: { slotsPerAz: number; volumeSlots: readonly string[] } }) => void) => {
    const base = loadEnvironment(envName, REPO_ROOT);
    const config = JSON.parse(JSON.stringify(base)) as typeof base;
    mutate(config as unknown as { mta: { slotsPerAz: number; volumeSlots: readonly string[] } });
    const { stacks } = build(envName, { config, nag: false });
    return Annotations.fromStack(stacks.mta).findWarning('*', Match.stringLikeRegexp('retained'));
  };

  test('synth warns, naming each removed slot\'s volume and the runbook, when slotsPerAz is lowered', () => {
    const found = warnings('prod', (c) => (c.mta.slotsPerAz = 1));
    const text = found.map((w) => String(w.entry.data));
    expect(text).toHaveLength(3);
    for (const slot of ['prod-mta-us-east-1a-2', 'prod-mta-us-east-1b-2', 'prod-mta-us-east-1c-2']) {
      expect(text.filter((t) => t.includes(`volley:slot=${slot}`))).toHaveLength(1);
    }
    expect(text[0]).toContain('Scaling the MTA tier in');
    expect(text[0]).toContain('aws ec2 delete-volume');
  });

  test('no warning while every listed slot is in the tier, nor once a deleted volume\'s slot is taken off the list', () => {
    expect(warnings('prod', () => undefined)).toEqual([]);
    expect(warnings('prod', (c) => {
      c.mta.slotsPerAz = 1;
      c.mta.volumeSlots = c.mta.volumeSlots.filter((s) => s.endsWith('-1'));
    })).toEqual([]);
  });
});

describe('MTA slots as HA pairs (mta.ha)', () => {
  const config = haEnvironment('prod');
  const { stacks } = build('prod', { config });
  const t = template(stacks.mta);
  const network = template(stacks.network);
  const groups = resources(t, 'AWS::AutoScaling::AutoScalingGroup');
  const pairs = mtaPairs(config.name, config.network.vpcCidr, config.availabilityZones, config.mta.slotsPerAz);
  const members = pairs.flatMap((p) => [p.a, p.b].map((m) => ({ ...m, slotId: p.slotId, peer: m.member === 'a' ? p.b : p.a })));
  const tag = (r: { Properties?: Record<string, unknown> }, key = 'volley:slot'): string | undefined =>
    (r.Properties?.Tags as { Key: string; Value: string }[] | undefined)?.find((x) => x.Key === key)?.Value;
  const subnetAz = new Map(Object.entries(resources(network, 'AWS::EC2::Subnet')).map(([id, r]) => [id, r.Properties?.AvailabilityZone]));
  const azOfImport = (value: unknown): unknown => {
    const exportName = (value as { 'Fn::ImportValue': string })['Fn::ImportValue'];
    return subnetAz.get([...subnetAz.keys()].find((id) => exportName.includes(id)) as string);
  };

  test('each slot is two nodes, "a" in its own AZ and "b" in the next one, each a group of one with its own retained encrypted volume', () => {
    expect(pairs).toHaveLength(6);
    expect(Object.keys(groups)).toHaveLength(12);
    const volumes = Object.values(resources(t, 'AWS::EC2::Volume'));
    expect(volumes).toHaveLength(12);
    const volumeAz = new Map(volumes.map((v) => [tag(v), v.Properties?.AvailabilityZone]));
    for (const v of volumes) {
      expect(v.DeletionPolicy).toBe('Retain');
      expect(v.Properties).toMatchObject({ Encrypted: true, VolumeType: 'gp3' });
    }
    for (const m of members) expect(volumeAz.get(m.memberId)).toBe(m.availabilityZone);
    // The two nodes of a pair never share an AZ: a dead AZ leaves one of them.
    for (const p of pairs) expect(p.a.availabilityZone).not.toBe(p.b.availabilityZone);
    expect(pairs.find((p) => p.slotId === 'prod-mta-us-east-1c-1')?.b.availabilityZone).toBe('us-east-1a');
    for (const group of Object.values(groups)) {
      const subnets = group.Properties?.VPCZoneIdentifier as unknown[];
      expect(subnets).toHaveLength(1);
      expect(azOfImport(subnets[0])).toBe(volumeAz.get(tag(group)));
    }
  });

  test('node "a" keeps the single slot\'s volume and group (same logical ids): turning ha on keeps the queue on it', () => {
    const single = template(build('prod', { nag: false }).stacks.mta);
    for (const type of ['AWS::EC2::Volume', 'AWS::AutoScaling::AutoScalingGroup']) {
      const before = resources(single, type);
      const after = resources(t, type);
      for (const [id, r] of Object.entries(before)) expect(tag(after[id] ?? {})).toBe(tag(r));
    }
  });

  test('a pair\'s nodes are replaced on EC2 health only (the secondary fails the MTA check by design), and are targets of every target group', () => {
    const targetGroupCount = config.ingress.loadBalancers.length * (config.mta.smtpPorts.length + 1);
    for (const group of Object.values(groups)) {
      expect(group.Properties).toMatchObject({ HealthCheckType: 'EC2' });
      expect(group.Properties?.TargetGroupARNs).toHaveLength(targetGroupCount);
    }
  });

  test('groups are still chained one at a time, both nodes of every pair included', () => {
    const ids = Object.keys(groups);
    const roots = ids.filter((id) => !(groups[id]?.DependsOn ?? []).some((d) => ids.includes(d)));
    expect(roots).toHaveLength(1);
    const seen = [roots[0] as string];
    for (;;) {
      const next = ids.filter((id) => (groups[id]?.DependsOn ?? []).includes(seen[seen.length - 1] as string));
      if (next.length === 0) break;
      expect(next).toHaveLength(1);
      seen.push(next[0] as string);
    }
    expect(seen.sort()).toEqual(ids.sort());
  });

  test('every node has a mirror interface with its fixed IP, in its AZ, carrying only its own mirror group, which its instance carries too', () => {
    const interfaces = Object.values(resources(t, 'AWS::EC2::NetworkInterface'));
    expect(interfaces).toHaveLength(members.length);
    const mirrorGroups = resources(network, 'AWS::EC2::SecurityGroup');
    const groupOf = (memberId: string): string => Object.entries(mirrorGroups).find(([, g]) => String(g.Properties?.GroupDescription).startsWith(`Volley mirror of ${memberId}:`))?.[0] as string;
    const templates = resources(t, 'AWS::EC2::LaunchTemplate');
    for (const m of members) {
      const eni = interfaces.find((i) => tag(i) === m.memberId);
      expect(eni?.Properties).toMatchObject({ PrivateIpAddress: m.mirrorIp });
      expect(azOfImport(eni?.Properties?.SubnetId)).toBe(m.availabilityZone);
      const sgs = JSON.stringify(eni?.Properties?.GroupSet);
      expect((eni?.Properties?.GroupSet as unknown[]).length).toBe(1);
      expect(sgs).toContain(groupOf(m.memberId));
      const lt = Object.values(templates).find((x) => JSON.stringify(x.Properties).includes(`VOLLEY_SLOT=${m.memberId}\\n`));
      const ltGroups = JSON.stringify((lt?.Properties?.LaunchTemplateData as { SecurityGroupIds: unknown[] }).SecurityGroupIds);
      expect(ltGroups).toContain(groupOf(m.memberId));
      expect(ltGroups).toContain('Mtas');
      expect(ltGroups).not.toContain(groupOf(m.peer.memberId));
    }
    // Created before any instance launches, which could otherwise take a fixed mirror IP first.
    const eniIds = Object.keys(resources(t, 'AWS::EC2::NetworkInterface'));
    for (const group of Object.values(groups)) expect(group.DependsOn).toEqual(expect.arrayContaining(eniIds));
  });

  test('each node runs as its pair\'s node id and knows its mirror config parameter and the mirror secret', () => {
    const templates = Object.values(resources(t, 'AWS::EC2::LaunchTemplate'));
    for (const m of members) {
      const userData = JSON.stringify(templates.find((x) => JSON.stringify(x.Properties).includes(`VOLLEY_SLOT=${m.memberId}\\n`))?.Properties);
      expect(userData).toContain(`VOLLEY_NODE_ID=${m.slotId}\\n`);
      expect(userData).toContain('VOLLEY_MIRROR_CONFIG=/etc/volley/mirror.yaml\\n');
      expect(userData).toContain(`VOLLEY_MIRROR_CONFIG_PARAMETER=/volley/prod/mirror/${m.memberId}/config\\n`);
      expect(userData).toMatch(/VOLLEY_MIRROR_SECRET_ID=/);
    }
  });

  test('each node\'s published mirror config loads in the mirror\'s loader: its own IP, its peer\'s, the CA-pinned link, the pair\'s lease, the MTA started on promotion', () => {
    const parameters = resources(t, 'AWS::SSM::Parameter');
    for (const m of members) {
      const p = Object.values(parameters).find((x) => x.Properties?.Name === `/volley/prod/mirror/${m.memberId}/config`);
      const c = parseMirrorConfig(p?.Properties?.Value as string, '/etc/volley/mirror.yaml');
      expect(c).toMatchObject({
        name: m.memberId,
        persistentPath: '/var/lib/volley',
        listen: { address: m.mirrorIp, port: 7627 },
        peer: { address: m.peer.mirrorIp, port: 7627 },
        tls: { cert: '/etc/volley/mirror.crt', key: '/etc/volley/mirror.key' },
        peerCa: '/etc/volley/mirror-ca.crt',
        secretFile: '/etc/volley/mirror.secret',
        mode: 'async',
        arbiter: { kind: 's3', bucket: stacks.storage.bucketName, key: `mirror/prod/${m.slotId}/lease.json`, region: 'us-east-1' },
        promoteCommand: ['/usr/bin/sudo', '-n', '/usr/bin/systemctl', 'start', '--no-block', 'volley-mta.service'],
        adminListen: { address: '127.0.0.1', port: 7628 },
      });
    }
  });

  test('a node may attach only its own volume and mirror interface, ships under its pair\'s prefix, and reads and writes exactly its pair\'s lease object', () => {
    const policies = Object.values(resources(t, 'AWS::IAM::Policy'));
    expect(policies).toHaveLength(members.length);
    for (const policy of policies) {
      const statements = (policy.Properties?.PolicyDocument as { Statement: Record<string, unknown>[] }).Statement;
      const attach = statements.filter((s) => String(s.Action).startsWith('ec2:Attach'));
      const tags = new Set(attach.map((s) => (s.Condition as { StringEquals: Record<string, string> }).StringEquals['aws:ResourceTag/volley:slot']));
      expect(tags.size).toBe(1);
      const memberId = [...tags][0] as string;
      const m = members.find((x) => x.memberId === memberId);
      expect(m).toBeDefined();
      expect(attach.map((s) => s.Action).sort()).toEqual(['ec2:AttachNetworkInterface', 'ec2:AttachNetworkInterface', 'ec2:AttachVolume', 'ec2:AttachVolume']);
      expect(JSON.stringify(attach)).toMatch(/network-interface\//);
      const lease = statements.filter((s) => s.Sid === 'OwnArbiterLease');
      expect(lease).toEqual([
        {
          Sid: 'OwnArbiterLease',
          Effect: 'Allow',
          Action: ['s3:GetObject', 's3:PutObject'],
          Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:s3:::${stacks.storage.bucketName}/mirror/prod/${m?.slotId}/lease.json`]] },
        },
      ]);
      const ship = statements.filter((s) => s.Sid === 'ShipToOwnPrefix');
      expect(JSON.stringify(ship[0]?.Resource)).toContain(`/mta/prod/${m?.slotId}/*`);
      expect(statements.filter((s) => s.Resource === '*').map((s) => s.Action).sort()).toEqual(['ec2:DescribeNetworkInterfaces', 'ec2:DescribeVolumes']);
      // IAM refuses a policy whose statements repeat a Sid.
      const sids = statements.map((s) => s.Sid).filter((sid) => sid !== undefined);
      expect(new Set(sids).size).toBe(sids.length);
    }
  });

  test('no retained-volume warning while both nodes of every pair are in the tier; turning ha off again warns about every "b" volume still listed', () => {
    expect(Annotations.fromStack(stacks.mta).findWarning('*', Match.stringLikeRegexp('retained'))).toEqual([]);
    const off = JSON.parse(JSON.stringify(config)) as { mta: Record<string, unknown> };
    delete off.mta.ha;
    delete off.mta.mirrorPort;
    const { stacks: single } = build('prod', { config: validateEnvironment(off, REPO_ROOT), nag: false });
    const text = Annotations.fromStack(single.mta).findWarning('*', Match.stringLikeRegexp('retained')).map((w) => String(w.entry.data));
    expect(text).toHaveLength(6);
    for (const p of pairs) expect(text.filter((t) => t.includes(`volley:slot=${p.b.memberId}`))).toHaveLength(1);
  });

  test('volumeSlots must list both nodes\' volumes: a missing "-b" stops synth, naming it', () => {
    const raw = JSON.parse(JSON.stringify(config)) as { mta: { volumeSlots: string[] } };
    raw.mta.volumeSlots = raw.mta.volumeSlots.filter((s) => s !== 'prod-mta-us-east-1b-2-b');
    expect(() => validateEnvironment(raw, REPO_ROOT)).toThrow("add 'prod-mta-us-east-1b-2-b'");
  });
});
