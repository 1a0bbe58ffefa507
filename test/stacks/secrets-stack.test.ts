// Who may read the proxy-link secrets, from the synthesized IAM of every
// stack: every slot reads the link secret (shared secret, CA certificate);
// only proxy slots read the CA key secret, so a compromised MTA cannot mint a
// certificate for a proxy's address.
import { build, resources, template } from './helpers';

type Statement = { Effect: string; Action: string | string[]; Resource: unknown };

describe.each(['dev', 'staging', 'prod'])('%s', (envName) => {
  const { app, config, stacks } = build(envName, { nag: false });
  app.synth();
  const secrets = template(stacks.secrets);
  const secretIds = Object.fromEntries(Object.entries(resources(secrets, 'AWS::SecretsManager::Secret')).map(([id, r]) => [r.Properties?.Name as string, id]));
  const linkId = secretIds[`volley/${envName}/proxy-link`] as string;
  const caKeyId = secretIds[`volley/${envName}/proxy-ca-key`] as string;

  /** Per slot role (by its description, "Volley mta|proxy slot …"): which secrets its policies let it read. */
  function readableSecrets(): { role: string; kind: string; reads: string[] }[] {
    const out: { role: string; kind: string; reads: string[] }[] = [];
    for (const stack of [stacks.network, stacks.storage, stacks.secrets, stacks.ingress, stacks.mta, stacks.proxy, stacks.dns]) {
      const t = template(stack);
      const roles = resources(t, 'AWS::IAM::Role');
      const policies = Object.values(resources(t, 'AWS::IAM::Policy'));
      for (const [roleId, role] of Object.entries(roles)) {
        const kind = /^Volley (\w+) slot/.exec(String(role.Properties?.Description))?.[1] ?? 'other';
        const reads = policies
          .filter((p) => JSON.stringify(p.Properties?.Roles).includes(`"${roleId}"`))
          .flatMap((p) => (p.Properties?.PolicyDocument as { Statement: Statement[] }).Statement)
          .filter((s) => s.Effect === 'Allow' && JSON.stringify(s.Action).includes('secretsmanager:'))
          .map((s) => {
            const resource = JSON.stringify(s.Resource);
            expect(resource).not.toContain('*');
            return resource.includes(`ExportsOutputRef${caKeyId}`) ? 'ca-key' : resource.includes(`ExportsOutputRef${linkId}`) ? 'link' : resource;
          });
        out.push({ role: `${stack.stackName}/${roleId}`, kind, reads: [...new Set(reads)].sort() });
      }
    }
    return out;
  }

  test('the environment has a link secret and a separate CA key secret, neither with a value in the template', () => {
    expect(linkId).toBeDefined();
    expect(caKeyId).toBeDefined();
    const caKey = resources(secrets, 'AWS::SecretsManager::Secret')[caKeyId];
    expect(caKey?.Properties?.SecretString).toBeUndefined();
    expect(caKey?.DeletionPolicy).toBe('Retain');
  });

  test('no MTA role can read the CA key secret; every proxy role can, and every slot reads the link secret', () => {
    const roles = readableSecrets();
    const mtas = roles.filter((r) => r.kind === 'mta');
    const proxies = roles.filter((r) => r.kind === 'proxy');
    expect(mtas).toHaveLength(config.availabilityZones.length * config.mta.slotsPerAz);
    expect(proxies).toHaveLength(config.proxy.proxies.length);
    for (const r of mtas) expect(r).toEqual({ ...r, reads: ['link'] });
    for (const r of proxies) expect(r).toEqual({ ...r, reads: ['ca-key', 'link'] });
    // Nothing else in the app (custom-resource roles and the like) reads either secret.
    for (const r of roles.filter((x) => x.kind !== 'mta' && x.kind !== 'proxy')) expect(r).toEqual({ ...r, reads: [] });
  });
});
