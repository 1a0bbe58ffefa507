// The order a deploy updates a slot in: its group (the rolling update that
// launches new instances) only after the config parameters its instances read
// at boot, so a new instance never reads a parameter the deploy has not
// updated yet, naming an object its role's new policy may not read (the
// first deploy of the prefixed asset grant: the old config object is at the
// assets bucket's root).
import type { Stack } from 'aws-cdk-lib';
import { build, haEnvironment, resources, template } from '../helpers';

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
