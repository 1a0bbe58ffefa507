import { objectKey } from '../../runtime/mta/events/sinks/s3-key';
import { arbiterKey } from '../../stacks/event-shipping';
import { build, haEnvironment, resources, template } from './helpers';

const { config, stacks } = build('prod');
const t = template(stacks.storage);
const buckets = resources(t, 'AWS::S3::Bucket');
const events = Object.entries(buckets).find(([id]) => id.startsWith('Events'))?.[1];

test('the events bucket is encrypted, private, versioned, logged and retained', () => {
  expect(events?.DeletionPolicy).toBe('Retain');
  expect(events?.Properties).toMatchObject({
    BucketName: `volley-prod-events-${config.account}-${config.region}`,
    BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
    PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
    VersioningConfiguration: { Status: 'Enabled' },
    LoggingConfiguration: { LogFilePrefix: 'events/' },
  });
  for (const bucket of Object.values(buckets)) expect(bucket.Properties).toHaveProperty('PublicAccessBlockConfiguration.BlockPublicPolicy', true);
});

test('lifecycle moves logs to cheaper storage, then expires them, as configured', () => {
  expect(events?.Properties?.LifecycleConfiguration).toEqual({
    Rules: [
      {
        Id: 'age-out-logs',
        Status: 'Enabled',
        Transitions: [
          { StorageClass: 'STANDARD_IA', TransitionInDays: config.storage.infrequentAccessAfterDays },
          { StorageClass: 'GLACIER', TransitionInDays: config.storage.glacierAfterDays },
        ],
        ExpirationInDays: config.storage.expireAfterDays,
        NoncurrentVersionExpiration: { NoncurrentDays: 30 },
        AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
      },
    ],
  });
});

test('bucket policies refuse any request that is not TLS', () => {
  const policies = Object.values(resources(t, 'AWS::S3::BucketPolicy'));
  expect(policies).toHaveLength(2);
  for (const p of policies) {
    expect(p.Properties?.PolicyDocument).toMatchObject({
      Statement: expect.arrayContaining([
        expect.objectContaining({ Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } }, Effect: 'Deny', Principal: { AWS: '*' } }),
      ]),
    });
  }
});

test('no instance can write outside its own prefix: MTA roles each get exactly one prefix, proxies none', () => {
  const mtaPolicies = Object.values(resources(template(stacks.mta), 'AWS::IAM::Policy'));
  const prefixes = mtaPolicies.flatMap((p) =>
    (p.Properties?.PolicyDocument as { Statement: { Sid?: string; Resource: unknown }[] }).Statement.filter((s) => s.Sid === 'ShipToOwnPrefix').map((s) => JSON.stringify(s.Resource)),
  );
  expect(prefixes).toHaveLength(stacks.mta.slots.length);
  expect(new Set(prefixes).size).toBe(prefixes.length);
  for (const [i, { slot }] of stacks.mta.slots.entries()) expect(prefixes[i]).toContain(`${events?.Properties?.BucketName}/mta/prod/${slot.slotId}/*`);
  const proxyPolicies = JSON.stringify(resources(template(stacks.proxy), 'AWS::IAM::Policy'));
  expect(proxyPolicies).not.toContain('s3:PutObject');
});

test('an MTA role may do exactly what the S3 shipper does (put, multipart, abort, HEAD) on its own node\'s prefix, and nothing else on the events bucket', () => {
  const mta = template(stacks.mta);
  for (const { slot } of stacks.mta.slots) {
    const roleId = mta.getResourceId('AWS::IAM::Role', { Properties: { Description: `Volley mta slot ${slot.slotId}` } });
    const policies = Object.values(resources(mta, 'AWS::IAM::Policy')).filter((p) => JSON.stringify(p.Properties?.Roles) === JSON.stringify([{ Ref: roleId }]));
    const statements = policies.flatMap((p) => (p.Properties?.PolicyDocument as { Statement: { Sid?: string; Action: unknown; Resource: unknown; Effect: string }[] }).Statement);
    const onEvents = statements.filter((s) => JSON.stringify(s.Resource ?? null).includes(stacks.storage.bucketName));
    expect(onEvents).toEqual([
      {
        Sid: 'ShipToOwnPrefix',
        Effect: 'Allow',
        Action: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:GetObject'],
        Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:s3:::${stacks.storage.bucketName}/mta/prod/${slot.slotId}/*`]] },
      },
    ]);
    // Every key the node's shipper writes is inside that resource.
    for (const kind of ['events', 'sqlite'] as const) {
      const key = objectKey({ prefix: 'mta', env: config.name, node: slot.slotId, kind, file: 'w0.2026-12-05T00-00-00-000Z.jsonl', start: new Date(), gzip: true });
      expect(key.startsWith(`mta/prod/${slot.slotId}/`)).toBe(true);
    }
  }
});

describe('HA pairs (mta.ha): the arbiter leases', () => {
  const paired = build('prod', { config: haEnvironment('prod'), nag: false });
  const bucket = Object.entries(resources(template(paired.stacks.storage), 'AWS::S3::Bucket')).find(([id]) => id.startsWith('Events'))?.[1];

  test('a lease\'s superseded versions (one per renewal) expire after a day; the rule of the logs is unchanged', () => {
    const rules = (bucket?.Properties?.LifecycleConfiguration as { Rules: Record<string, unknown>[] }).Rules;
    expect(rules).toContainEqual({ Id: 'arbiter-lease-versions', Status: 'Enabled', Prefix: 'mirror/', NoncurrentVersionExpiration: { NoncurrentDays: 1 } });
    expect(rules.find((r) => r.Id === 'age-out-logs')).toMatchObject({ NoncurrentVersionExpiration: { NoncurrentDays: 30 } });
  });

  test('every node may read and write its pair\'s lease object and no other, beside shipping under its pair\'s prefix', () => {
    const mta = template(paired.stacks.mta);
    for (const { slot, pairMember } of paired.stacks.mta.slots) {
      const roleId = mta.getResourceId('AWS::IAM::Role', { Properties: { Description: `Volley mta slot ${slot.slotId}` } });
      const statements = Object.values(resources(mta, 'AWS::IAM::Policy'))
        .filter((p) => JSON.stringify(p.Properties?.Roles) === JSON.stringify([{ Ref: roleId }]))
        .flatMap((p) => (p.Properties?.PolicyDocument as { Statement: { Sid?: string; Resource: unknown; Condition?: unknown }[] }).Statement);
      const onEvents = statements.filter((s) => JSON.stringify(s.Resource ?? null).includes(paired.stacks.storage.bucketName));
      expect(onEvents.map((s) => s.Sid).sort()).toEqual(['OwnArbiterLease', 'OwnArbiterLeaseAbsent', 'ShipToOwnPrefix']);
      // ListBucket only for the lease's own key, so a lease not yet created reads as 404 (absent), not 403.
      expect(onEvents.find((s) => s.Sid === 'OwnArbiterLeaseAbsent')?.Condition).toEqual({ StringEquals: { 's3:prefix': arbiterKey('prod', pairMember?.slotId as string) } });
      const lease = JSON.stringify(onEvents.find((s) => s.Sid === 'OwnArbiterLease')?.Resource);
      expect(lease).toContain(`/${arbiterKey('prod', pairMember?.slotId as string)}"`);
      expect(lease).not.toContain('*');
    }
  });
});
