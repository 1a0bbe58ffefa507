import { Validations } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { build, haEnvironment, inboundEnvironment } from './helpers';

test.each(['dev', 'staging', 'prod'])('%s passes cdk-nag AwsSolutions with every acknowledgement giving a reason', (envName) => {
  const { app } = build(envName);
  expect(() => app.synth()).not.toThrow();

  const acknowledgements = app.node
    .findAll()
    .flatMap((c) => c.node.metadata.filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY).map((m) => m.data as Record<string, string>))
    .flatMap((data) => Object.entries(data));
  expect(acknowledgements.length).toBeGreaterThan(0);
  for (const [id, reason] of acknowledgements) {
    expect(reason.length).toBeGreaterThan(30);
    // No blanket IAM5: every wildcard is acknowledged by its exact finding.
    expect(id).not.toMatch(/IAM5$/);
  }
});

test.each(['staging', 'prod'])('%s with its MTA slots as HA pairs passes cdk-nag AwsSolutions, and no template repeats a policy Sid', (envName) => {
  const { app } = build(envName, { config: haEnvironment(envName) });
  const assembly = app.synth();
  for (const stack of assembly.stacks) {
    for (const r of Object.values(stack.template.Resources as Record<string, { Type: string; Properties?: { PolicyDocument?: { Statement: { Sid?: string }[] } } }>)) {
      const sids = (r.Properties?.PolicyDocument?.Statement ?? []).map((s) => s.Sid).filter((sid) => sid !== undefined);
      expect(new Set(sids).size).toBe(sids.length);
    }
  }
});

test.each(['rehearsal', 'prod'])('%s with the inbound listener (an internet-facing NLB, the internet on its port 25) passes cdk-nag AwsSolutions, acknowledged with reasons', (envName) => {
  const config = envName === 'rehearsal' ? undefined : inboundEnvironment(envName);
  const { app } = build(envName, { config });
  expect(() => app.synth()).not.toThrow();
  const acknowledged = app.node
    .findAll()
    .filter((c) => c.node.path.includes('Inbound'))
    .flatMap((c) => c.node.metadata.filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY).map((m) => m.data as Record<string, string>))
    .flatMap((data) => Object.entries(data));
  expect(acknowledged.map(([id]) => id).sort()).toEqual(['Annotation::AwsSolutions-EC23', 'Annotation::AwsSolutions-ELB2']);
  for (const [, reason] of acknowledged) expect(reason.length).toBeGreaterThan(30);
});

test('an unacknowledged finding fails synth (the checks are really on)', () => {
  const { app, stacks } = build('dev');
  new s3.Bucket(stacks.storage, 'Careless', {}); // no TLS enforcement, no access logs
  expect(() => app.synth()).toThrow();
});
