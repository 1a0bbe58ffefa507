import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { loadEnvironment } from '../../stacks/environments';
import { mtaSlotId } from '../../stacks/mta-tier-stack';
import { build, REPO_ROOT, resources, template } from './helpers';

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
