// What a slot's instance role may read from the CDK assets bucket
// (cdk-hnb659fds-assets-<account>-<region>, shared by every CDK app of the
// account and region): s3:GetObject on its own stack's prefix, for the kinds
// of object it installs, and nothing else: not the whole bucket, not another
// tier's objects, not its stack's template, no listing. And that the grant
// still reaches a config object a later deploy publishes, before any policy
// names it (the exact-key grant that failed the rehearsal's config drill).
import { App, DefaultStackSynthesizer, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { publishConfigFile, publishConfigText, RuntimeDistribution } from '../../../stacks/constructs/runtime-distribution';
import { iamMatch } from '../../rehearsal/fake-aws/s3';
import { build, FIXTURE_PACKAGE, resources, template } from '../helpers';

type Statement = { Sid?: string; Effect: string; Action: string | string[]; Resource?: unknown };

/** An ARN as the policy writes it (a Fn::Join around the partition), resolved as IAM would read it. */
function resolveArn(value: unknown): string {
  if (typeof value === 'string') return value;
  const join = (value as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
  if (!join) throw new Error(`not an ARN the test resolves: ${JSON.stringify(value)}`);
  return join[1].map((part) => (typeof part === 'string' ? part : (part as { Ref?: string }).Ref === 'AWS::Partition' ? 'aws' : JSON.stringify(part))).join(join[0]);
}

describe.each(['dev', 'staging', 'prod', 'rehearsal'])('%s', (envName) => {
  const { app, config, stacks } = build(envName, { nag: false });
  const assembly = app.synth();
  const bucket = `cdk-hnb659fds-assets-${config.account}-${config.region}`;
  /** Every file asset's object key, by the stack whose manifest publishes it. */
  const published = new Map<string, string[]>();
  for (const name of readdirSync(assembly.directory).filter((n) => n.endsWith('.assets.json'))) {
    const manifest = JSON.parse(readFileSync(join(assembly.directory, name), 'utf8')) as { files?: Record<string, { destinations: Record<string, { bucketName: string; objectKey: string }> }> };
    published.set(name.replace(/\.assets\.json$/, ''), Object.values(manifest.files ?? {}).flatMap((f) => Object.values(f.destinations).map((d) => d.objectKey)));
  }
  const tiers = [
    { stack: stacks.mta, kinds: ['zip', 'yaml'] },
    { stack: stacks.proxy, kinds: ['zip'] },
  ];
  /** Each slot role's policy statements, by tier. */
  const policies = (stack: Stack): Statement[][] =>
    Object.values(resources(template(stack), 'AWS::IAM::Policy')).map((p) => (p.Properties?.PolicyDocument as { Statement: Statement[] }).Statement);

  test('every stack publishes its assets (templates, the runtime zip, the MTAs\' config) under a prefix of its own name, and the tiers nothing else', () => {
    expect([...published.keys()].sort()).toEqual(assembly.stacks.map((s) => s.stackName).sort());
    for (const [stack, keys] of published) for (const key of keys) expect({ key, under: key.startsWith(`${stack}/`) }).toEqual({ key, under: true });
    // What a tier's grant (its prefix, by extension) could reach: its template, and what its instances install.
    expect((published.get(stacks.mta.stackName) ?? []).map((k) => k.split('.').at(-1)).sort()).toEqual(['json', 'yaml', 'zip']);
    expect((published.get(stacks.proxy.stackName) ?? []).map((k) => k.split('.').at(-1)).sort()).toEqual(['json', 'zip']);
  });

  test('each slot role reads the assets bucket by s3:GetObject on its own stack\'s prefix only, for the kinds its instance installs: no bucket-wide grant, no listing', () => {
    let roles = 0;
    for (const { stack, kinds } of tiers) {
      for (const statements of policies(stack)) {
        const onAssets = statements.filter((st) => JSON.stringify(st.Resource ?? '').includes(bucket));
        expect(onAssets.map((st) => ({ effect: st.Effect, action: st.Action, resources: [st.Resource].flat().map(resolveArn) }))).toEqual([
          { effect: 'Allow', action: 's3:GetObject', resources: kinds.map((k) => `arn:aws:s3:::${bucket}/${stack.stackName}/*.${k}`) },
        ]);
        // Not on any bucket, any key: Asset.grantRead's wildcards (GetObject*, List*, GetBucket*) read the bucket's listing and all of it.
        for (const st of statements) expect(JSON.stringify(st.Action)).not.toMatch(/s3:List|s3:GetBucket|s3:GetObject\*|"s3:\*"|"\*"/);
        roles++;
      }
    }
    expect(roles).toBe(config.availabilityZones.length * config.mta.slotsPerAz * (config.mta.ha ? 2 : 1) + config.proxy.proxies.length);
  });

  test('that grant reaches what the instance installs and the config object a later deploy publishes; not its stack\'s template, the other tier\'s objects, another app\'s or environment\'s', () => {
    const grants = new Map(tiers.map(({ stack }) => [stack.stackName, [...new Set(policies(stack).flatMap((s) => s.filter((st) => st.Sid === 'ReadOwnStackAssets')).flatMap((st) => [st.Resource].flat().map(resolveArn)))]]));
    const reads = (stack: Stack, key: string): boolean => (grants.get(stack.stackName) ?? []).some((r) => iamMatch(r, `arn:aws:s3:::${bucket}/${key}`));
    const keysOf = (stack: Stack) => published.get(stack.stackName) ?? [];
    const mtaConfig = stacks.mta.publishedConfig.asset?.s3ObjectKey as string;
    const mtaRuntime = (stacks.mta.node.findChild('Distribution') as RuntimeDistribution).runtime.s3ObjectKey;
    const proxyRuntime = (stacks.proxy.node.findChild('Distribution') as RuntimeDistribution).runtime.s3ObjectKey;
    expect(keysOf(stacks.mta)).toEqual(expect.arrayContaining([mtaConfig, mtaRuntime]));
    const cases = {
      mtaRuntime: reads(stacks.mta, mtaRuntime),
      mtaConfig: reads(stacks.mta, mtaConfig),
      // The next deploy's config: a new hash under the same prefix, published before the parameter names it.
      mtaNextConfig: reads(stacks.mta, mtaConfig.replace(/[^/]+\.yaml$/, `${'0'.repeat(64)}.yaml`)),
      proxyRuntime: reads(stacks.proxy, proxyRuntime),
      mtaTemplate: keysOf(stacks.mta).filter((k) => k.endsWith('.json')).some((k) => reads(stacks.mta, k)),
      proxyTemplate: keysOf(stacks.proxy).filter((k) => k.endsWith('.json')).some((k) => reads(stacks.proxy, k)),
      proxyReadsMtaConfig: reads(stacks.proxy, mtaConfig),
      mtaReadsProxyRuntime: reads(stacks.mta, proxyRuntime),
      otherAppAtRoot: reads(stacks.mta, `${'a'.repeat(64)}.zip`) || reads(stacks.mta, `${'a'.repeat(64)}.yaml`),
      otherEnvironment: reads(stacks.mta, mtaConfig.replace(`Volley-${envName}-`, 'Volley-other-')),
      otherStacks: [...published].filter(([s]) => s !== stacks.mta.stackName && s !== stacks.proxy.stackName).some(([, keys]) => keys.some((k) => reads(stacks.mta, k) || reads(stacks.proxy, k))),
    };
    expect(cases).toEqual({
      mtaRuntime: true,
      mtaConfig: true,
      mtaNextConfig: true,
      proxyRuntime: true,
      mtaTemplate: false,
      proxyTemplate: false,
      proxyReadsMtaConfig: false,
      mtaReadsProxyRuntime: false,
      otherAppAtRoot: false,
      otherEnvironment: false,
      otherStacks: false,
    });
  });
});

describe('a grant that could not be narrowed stops synth, with code ESTACKASSET', () => {
  const dir = mkdtempSync(join(tmpdir(), 'volley-distribution-'));
  function distributionIn(stack: Stack): { distribution: RuntimeDistribution; role: iam.Role } {
    const distribution = new RuntimeDistribution(stack, 'Distribution', { packageDir: FIXTURE_PACKAGE });
    return { distribution, role: new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') }) };
  }

  test('a stack publishing at the bucket\'s root (no bucketPrefix): its role could only be given every zip of every app', () => {
    const stack = new Stack(new App(), 'Plain', { env: { account: '111111111111', region: 'eu-west-1' } });
    const { distribution, role } = distributionIn(stack);
    const config = publishConfigText(stack, 'Config', { text: 'name: a\n', parameterName: '/p', installPath: '/etc/volley/proxy.yaml' });
    expect(() => distribution.grantRead(role, config)).toThrow(expect.objectContaining({ code: 'ESTACKASSET', message: expect.stringMatching(/is not published under its stack's prefix Plain\//) }));
  });

  // With no extension CDK ends the key with its hash: a grant by it would name the one object (the reverted fix's race).
  test.each(['volley', 'volley.json', 'volley.conf'])('a config file named %s: not a kind whose grant covers every version and never the stack\'s template', (name) => {
    const stack = new Stack(new App(), 'Prefixed', { env: { account: '111111111111', region: 'eu-west-1' }, synthesizer: new DefaultStackSynthesizer({ bucketPrefix: 'Prefixed/' }) });
    const { distribution, role } = distributionIn(stack);
    writeFileSync(join(dir, name), 'hostname: a\n');
    const config = publishConfigFile(distribution, 'Config', { file: join(dir, name), parameterName: '/p', installPath: '/etc/volley/volley.yaml' });
    expect(() => distribution.grantRead(role, config)).toThrow(expect.objectContaining({ code: 'ESTACKASSET', message: expect.stringMatching(/is not a \.zip or \.yaml or \.yml object/) }));
  });
});
