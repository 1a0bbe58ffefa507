import { build, resources, template } from './helpers';

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
    (p.Properties?.PolicyDocument as { Statement: { Sid?: string; Resource: unknown }[] }).Statement.filter((s) => s.Sid === 'WriteOwnPrefix').map((s) => JSON.stringify(s.Resource)),
  );
  expect(prefixes).toHaveLength(stacks.mta.slots.length);
  expect(new Set(prefixes).size).toBe(prefixes.length);
  for (const [i, { slot }] of stacks.mta.slots.entries()) expect(prefixes[i]).toContain(`${events?.Properties?.BucketName}/mta/${slot.slotId}/*`);
  const proxyPolicies = JSON.stringify(resources(template(stacks.proxy), 'AWS::IAM::Policy'));
  expect(proxyPolicies).not.toContain('s3:PutObject');
});
