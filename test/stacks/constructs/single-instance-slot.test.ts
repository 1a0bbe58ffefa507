// The order a deploy updates a slot in: its group (the rolling update that
// launches new instances) only after the config parameters its instances read
// at boot, so a new instance never reads a parameter the deploy has not
// updated yet, naming an object its role's new policy may not read (the
// first deploy of the prefixed asset grant: the old config object is at the
// assets bucket's root).
//
// The operator's file secrets (mta.fileSecrets) as the stacks grant them: each
// MTA slot's role may GetSecretValue on exactly the listed secrets' ARNs (the
// name and AWS's six-character suffix), nothing wider and no other action;
// its instance.env names them for `volley secret-files fetch`; proxies get
// neither; cdk-nag passes with no new acknowledgement.
import { type Stack, Validations } from 'aws-cdk-lib';
import { build, haEnvironment, REPO_ROOT, resources, template } from '../helpers';
import { validateEnvironment, loadEnvironment } from '../../../stacks/environments';
import { FILE_SECRETS_ENV } from '../../../bin/commands/secret-files';

type Statement = { Sid?: string; Effect: string; Action: string | string[]; Resource: unknown };

function statements(t: ReturnType<typeof template>): Statement[] {
  return Object.values(resources(t, 'AWS::IAM::Policy')).flatMap((p) => (p.Properties?.PolicyDocument as { Statement: Statement[] }).Statement);
}

function withFileSecrets(names: string[]) {
  const raw = JSON.parse(JSON.stringify(loadEnvironment('dev', REPO_ROOT))) as { mta: Record<string, unknown> };
  raw.mta.fileSecrets = names;
  return validateEnvironment(raw, REPO_ROOT);
}

const NAMES = ['volley/dev/dkim-keys', 'volley/dev/webhooks'];
const { app, config, stacks } = build('dev', { config: withFileSecrets(NAMES) });
const assembly = app.synth(); // cdk-nag runs here: a finding would throw
const mta = template(stacks.mta);
const proxy = template(stacks.proxy);
const arn = (name: string) => ({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:secretsmanager:${config.region}:${config.account}:secret:${name}-??????`]] });

test('every MTA slot may GetSecretValue on exactly the listed secrets, by name and suffix; proxies may not', () => {
  const granted = statements(mta).filter((s) => s.Sid === 'OperatorFileSecrets');
  const slots = config.availabilityZones.length * config.mta.slotsPerAz;
  expect(granted).toHaveLength(slots);
  for (const s of granted) expect(s).toEqual({ Sid: 'OperatorFileSecrets', Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: NAMES.map(arn) });
  // No other statement names them.
  expect(statements(mta).filter((s) => s.Sid !== 'OperatorFileSecrets' && NAMES.some((n) => JSON.stringify(s).includes(n)))).toEqual([]);
  expect(JSON.stringify(statements(proxy))).not.toContain('volley/dev/dkim-keys');
});

test('MTAs are told the names in instance.env (the variable `volley secret-files fetch` reads); proxies are not', () => {
  for (const lt of Object.values(resources(mta, 'AWS::EC2::LaunchTemplate'))) expect(JSON.stringify(lt.Properties)).toContain(`${FILE_SECRETS_ENV}=${NAMES.join(',')}`);
  for (const lt of Object.values(resources(proxy, 'AWS::EC2::LaunchTemplate'))) expect(JSON.stringify(lt.Properties)).not.toContain(FILE_SECRETS_ENV);
});

test('cdk-nag passes without an acknowledgement for them, and no template holds a file', () => {
  const acknowledged = app.node
    .findAll()
    .flatMap((c) => c.node.metadata.filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY).map((m) => Object.keys(m.data as object)))
    .flat();
  expect(acknowledged.filter((id) => id.includes('secretsmanager'))).toEqual([]);
  for (const artifact of assembly.stacks) expect(JSON.stringify(artifact.template)).not.toContain('/etc/volley/secrets/');
});

test('an environment without fileSecrets grants none and names none', () => {
  const plain = build('dev', { nag: false });
  expect(statements(template(plain.stacks.mta)).filter((s) => s.Sid === 'OperatorFileSecrets')).toEqual([]);
  expect(JSON.stringify(template(plain.stacks.mta).toJSON())).not.toContain(FILE_SECRETS_ENV);
});

/** The KEY=value lines user data writes to /etc/volley/instance.env. */
function instanceEnv(launchTemplate: { Properties?: Record<string, unknown> }): Record<string, string> {
  const userData = JSON.stringify((launchTemplate.Properties?.LaunchTemplateData as { UserData?: unknown }).UserData);
  return Object.fromEntries([...userData.matchAll(/"?(VOLLEY_[A-Z_]+)=([^"\\]*)/g)].map((m) => [m[1] as string, m[2] as string]));
}

/** For each group: the logical ids of the parameters its instances sync at boot, and the group's DependsOn. */
function groupsAndParameters(stack: Stack): { group: string; parameters: string[]; dependsOn: string[] }[] {
  const t = template(stack);
  const parameters = resources(t, 'AWS::SSM::Parameter');
  const templates = resources(t, 'AWS::EC2::LaunchTemplate');
  return Object.entries(resources(t, 'AWS::AutoScaling::AutoScalingGroup')).map(([group, g]) => {
    const lt = templates[(g.Properties?.LaunchTemplate as { LaunchTemplateId: { Ref: string } }).LaunchTemplateId.Ref];
    const env = instanceEnv(lt as { Properties?: Record<string, unknown> });
    const names = [env.VOLLEY_CONFIG_PARAMETER, env.VOLLEY_MIRROR_CONFIG_PARAMETER].filter((n): n is string => n !== undefined);
    const ids = names.map((name) => Object.entries(parameters).find(([, p]) => p.Properties?.Name === name)?.[0] ?? `none named ${name}`);
    return { group, parameters: ids, dependsOn: g.DependsOn ?? [] };
  });
}

test.each([
  ['dev', () => build('dev', { nag: false })],
  ['prod', () => build('prod', { nag: false })],
  ['staging with HA pairs (a mirror config too)', () => build('staging', { nag: false, config: haEnvironment('staging') })],
])('%s: every slot group is updated after the config parameters its instances read at boot', (_name, built) => {
  const { stacks, config } = built();
  const mtas = groupsAndParameters(stacks.mta);
  const proxies = groupsAndParameters(stacks.proxy);
  expect({ mtas: mtas.length, proxies: proxies.length }).toEqual({ mtas: config.availabilityZones.length * config.mta.slotsPerAz * (config.mta.ha ? 2 : 1), proxies: config.proxy.proxies.length });
  // An MTA: the shared config's URL (and a pair node its mirror config); a proxy its own config.
  for (const g of mtas) expect(g.parameters).toHaveLength(config.mta.ha ? 2 : 1);
  for (const g of proxies) expect(g.parameters).toHaveLength(1);
  for (const g of [...mtas, ...proxies]) {
    expect({ group: g.group, dependsOn: g.dependsOn }).toEqual({ group: g.group, dependsOn: expect.arrayContaining(g.parameters) });
  }
});
