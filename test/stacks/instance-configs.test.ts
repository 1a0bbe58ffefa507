// What every instance of an environment receives, read back from the
// synthesized artifacts and loaded by its own daemon's loader: an MTA's
// config by runtime/shared/config/load.ts, each proxy's by
// runtime/proxy/config.ts. So a config the daemon would refuse, or a topology
// the environment file does not describe, cannot be deployed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROXY_DEFAULTS } from '../../runtime/bootstrap/defaults';
import { parseProxyConfig } from '../../runtime/proxy/config';
import { parseConfig } from '../../runtime/shared/config/load';
import { loadEnvironment } from '../../stacks/environments';
import { INSTANCE_FILES, mtaConfigText } from '../../stacks/topology';
import { build, haEnvironment, REPO_ROOT, resources, template } from './helpers';

/** The KEY=value lines user data writes to /etc/volley/instance.env. */
function instanceEnv(launchTemplate: { Properties?: Record<string, unknown> }): Record<string, string> {
  const userData = JSON.stringify((launchTemplate.Properties?.LaunchTemplateData as { UserData?: unknown }).UserData);
  return Object.fromEntries([...userData.matchAll(/"?(VOLLEY_[A-Z_]+)=([^"\\]*)/g)].map((m) => [m[1] as string, m[2] as string]));
}

describe.each(['dev', 'staging', 'prod', 'rehearsal'])('%s', (envName) => {
  const { app, config, stacks } = build(envName, { nag: false });
  const assembly = app.synth();
  const mta = template(stacks.mta);
  const proxy = template(stacks.proxy);
  const network = template(stacks.network);
  const privateCidrs = Object.entries(resources(network, 'AWS::EC2::Subnet'))
    .filter(([id]) => id.includes('private'))
    .map(([, r]) => r.Properties?.CidrBlock as string)
    .sort();

  test('the MTAs\' published config loads in the MTA\'s loader and reaches every VMTA IP through the proxy holding it', () => {
    const asset = stacks.mta.publishedConfig.asset;
    expect(asset).toBeDefined();
    const text = readFileSync(join(assembly.directory, asset?.assetPath as string), 'utf8');
    const loaded = parseConfig(text, `${envName} MTA config`);
    const servers = loaded.proxies?.servers ?? [];
    expect(servers.map((s) => ({ name: s.name, host: s.host, port: s.port, sendingIps: s.sendingIps }))).toEqual(
      config.proxy.proxies.map((p) => ({ name: p.name, host: p.interfaceIp, port: config.proxy.port, sendingIps: p.sendingIps })),
    );
    // Pinned by the environment's CA, which `volley proxy-link fetch mta` writes from the secret.
    for (const s of servers) expect(s).toMatchObject({ caFile: '/etc/volley/proxy-ca.crt', fingerprint: undefined });
    expect(loaded.proxies?.secretFile).toBe('/etc/volley/proxy.secret');
    const held = new Set(servers.flatMap((s) => s.sendingIps));
    expect(loaded.vmtas.length).toBeGreaterThan(0);
    for (const v of loaded.vmtas) expect({ vmta: v.name, held: held.has(v.ip) }).toEqual({ vmta: v.name, held: true });
  });

  test('the MTAs\' drain endpoint: the environment\'s drain port (the one the security group opens between MTAs), the fetched secret, only the MTA subnets', () => {
    const text = readFileSync(join(assembly.directory, stacks.mta.publishedConfig.asset?.assetPath as string), 'utf8');
    const drain = parseConfig(text, `${envName} MTA config`).drain;
    expect(drain).toMatchObject({ listen: { address: '0.0.0.0', port: config.mta.drainPort }, secretFile: INSTANCE_FILES.drainSecret, trustedProxies: [] });
    // The certificate issued from the drain CA at each start, which `volley drain --ca-file` verifies.
    expect(drain?.tls).toEqual({ cert: INSTANCE_FILES.drainCert, key: INSTANCE_FILES.drainKey });
    expect([...(drain?.acceptFrom ?? [])].sort()).toEqual(privateCidrs);
  });

  test('the MTAs\' inbound listener (bounces, feedback reports): on every address at the environment\'s inbound port, for its domains; none where it declares none', () => {
    const text = readFileSync(join(assembly.directory, stacks.mta.publishedConfig.asset?.assetPath as string), 'utf8');
    const inbound = parseConfig(text, `${envName} MTA config`).inbound;
    if (config.mta.inbound) expect(inbound).toMatchObject({ address: '0.0.0.0', port: config.mta.inbound.port, domains: config.mta.inbound.domains });
    else expect(inbound).toBeUndefined();
    // The rehearsal declares one, so this test has a generated section to check.
    if (envName === 'rehearsal') expect(inbound?.port).toBe(2525);
  });

  test('the MTAs ship closed event files to the storage stack\'s bucket, under the prefix their roles may write; each instance knows its environment', () => {
    const text = readFileSync(join(assembly.directory, stacks.mta.publishedConfig.asset?.assetPath as string), 'utf8');
    const sinks = parseConfig(text, `${envName} MTA config`).events.sinks.filter((s) => s.type === 's3');
    // The interval is the config's own: the rehearsal's looks every 2 s so its run sees files shipped.
    expect(sinks).toEqual([
      { type: 's3', name: 's3', bucket: stacks.storage.bucketName, prefix: 'mta', region: config.region, endpoint: undefined, gzip: true, keepLocal: false, ship: ['events', 'sqlite'], intervalMs: envName === 'rehearsal' ? 2_000 : 30_000 },
    ]);
    // <env> of the shipper's keys: VOLLEY_ENV in instance.env, beside VOLLEY_NODE_ID (the slot id the role's prefix names).
    for (const lt of Object.values(resources(mta, 'AWS::EC2::LaunchTemplate'))) {
      const env = instanceEnv(lt);
      expect(env.VOLLEY_ENV).toBe(envName);
      expect(stacks.mta.slots.map((s) => s.slot.slotId)).toContain(env.VOLLEY_NODE_ID);
    }
    for (const lt of Object.values(resources(proxy, 'AWS::EC2::LaunchTemplate'))) expect(instanceEnv(lt).VOLLEY_ENV).toBe(envName);
  });

  test('each proxy gets its own config, loaded by the proxy\'s loader: its name, listen IP, TLS files, the MTA subnets, its sending IPs', () => {
    const parameters = resources(proxy, 'AWS::SSM::Parameter');
    const templates = Object.values(resources(proxy, 'AWS::EC2::LaunchTemplate'));
    expect(templates).toHaveLength(config.proxy.proxies.length);
    for (const p of config.proxy.proxies) {
      const name = `/volley/${envName}/proxy/${p.name}/config`;
      const parameter = Object.values(parameters).find((r) => r.Properties?.Name === name);
      const text = parameter?.Properties?.Value;
      expect(typeof text).toBe('string');
      const loaded = parseProxyConfig(text as string, name);
      expect(loaded).toMatchObject({
        name: p.name,
        listen: { address: p.interfaceIp, port: config.proxy.port },
        tls: { cert: '/etc/volley/proxy.crt', key: '/etc/volley/proxy.key' },
        secretFile: '/etc/volley/proxy.secret',
        sendingIps: p.sendingIps,
      });
      // The admin port the proxy bootstrap waits on for /readyz.
      expect(`http://${loaded.adminListen.address}:${loaded.adminListen.port}/readyz`).toBe(PROXY_DEFAULTS.readyUrl);
      // Only the MTAs' subnets, as the VPC really has them.
      expect([...loaded.allowFrom].sort()).toEqual(privateCidrs);
      // The proxy's instance syncs exactly this parameter to the file its unit starts the proxy with.
      const own = templates.map(instanceEnv).filter((env) => env.VOLLEY_CONFIG_PARAMETER === name);
      expect(own).toHaveLength(1);
      expect(own[0]).toMatchObject({ VOLLEY_ROLE: 'proxy', VOLLEY_CONFIG_SOURCE: 'inline', VOLLEY_CONFIG_FILE: '/etc/volley/proxy.yaml' });
      // Where `volley proxy-link fetch proxy` finds the CA it issues the proxy's certificate from.
      expect(JSON.stringify(templates.find((lt) => instanceEnv(lt).VOLLEY_CONFIG_PARAMETER === name)?.Properties)).toContain('VOLLEY_PROXY_CA_KEY_SECRET=');
    }
    for (const lt of Object.values(resources(mta, 'AWS::EC2::LaunchTemplate'))) {
      expect(instanceEnv(lt)).toMatchObject({ VOLLEY_ROLE: 'mta', VOLLEY_CONFIG_SOURCE: 's3-url', VOLLEY_CONFIG_FILE: '/etc/volley/volley.yaml' });
      // MTAs are not told where the CA key is (nor may they read it).
      expect(JSON.stringify(lt.Properties)).not.toContain('VOLLEY_PROXY_CA_KEY_SECRET');
      // Where `volley drain-secret fetch` (volley-mta.service) finds the drain secret.
      expect(JSON.stringify(lt.Properties)).toContain('VOLLEY_DRAIN_SECRET_ID=');
    }
    // Proxies have no queue to drain: they are not told where the drain secret is.
    for (const lt of templates) expect(JSON.stringify(lt.Properties)).not.toContain('VOLLEY_DRAIN_SECRET_ID');
  });

  test('no secret value is in any template: Secrets Manager generates the shared secret, the CA is added after deploy', () => {
    const secrets = resources(template(stacks.secrets), 'AWS::SecretsManager::Secret');
    // The link secret, the CA key secret and the drain secret (test/stacks/secrets-stack.test.ts: who reads which).
    expect(Object.values(secrets)).toHaveLength(3);
    const secret = Object.values(secrets).find((r) => r.Properties?.Name === `volley/${envName}/proxy-link`);
    expect(secret?.Properties).toMatchObject({ Name: `volley/${envName}/proxy-link`, GenerateSecretString: { GenerateStringKey: 'secret', PasswordLength: 64 } });
    expect(secret?.Properties?.SecretString).toBeUndefined();
    for (const artifact of assembly.stacks) {
      const text = JSON.stringify(artifact.template);
      expect(text).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE|"SecretString"|"secret":/);
    }
  });

  test('the link secret is readable by every slot and only by its ARN: GetSecretValue and DescribeSecret, no wildcard', () => {
    const roles = [...Object.keys(resources(mta, 'AWS::IAM::Role')), ...Object.keys(resources(proxy, 'AWS::IAM::Role'))];
    const slots = config.availabilityZones.length * config.mta.slotsPerAz + config.proxy.proxies.length;
    expect(roles).toHaveLength(slots);
    let granted = 0;
    for (const t of [mta, proxy]) {
      for (const policy of Object.values(resources(t, 'AWS::IAM::Policy'))) {
        const statements = (policy.Properties?.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] }).Statement;
        // The CA key secret's grants (proxies only) and the drain secret's (MTAs only) are checked in secrets-stack.test.ts.
        // The operator's file secrets (mta.fileSecrets, by name) in constructs/single-instance-slot.test.ts.
        const checked = statements.filter((st) => JSON.stringify(st.Action).includes('secretsmanager:') && !/ProxyCaKey|ExportsOutputRefDrain/.test(JSON.stringify(st.Resource)));
        for (const s of checked.filter((st) => (st as { Sid?: string }).Sid !== 'OperatorFileSecrets')) {
          expect([s.Action].flat().sort()).toEqual(['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue']);
          // The Secrets stack's export of this environment's secret ARN, and nothing else.
          expect(s.Resource).toEqual({ 'Fn::ImportValue': expect.stringMatching(new RegExp(`^Volley-${envName}-Secrets:ExportsOutputRefProxyLink`)) });
          granted++;
        }
      }
    }
    expect(granted).toBe(slots);
  });

  // Granted by CDK's own Auto Scaling group (it has signals): the bootstrap's SDK
  // SignalResource is signed with the role, unlike cfn-signal's anonymous call.
  test('every slot may signal CloudFormation (the bootstrap\'s SDK SignalResource), on its own stack only', () => {
    let granted = 0;
    for (const t of [mta, proxy]) {
      for (const policy of Object.values(resources(t, 'AWS::IAM::Policy'))) {
        const statements = (policy.Properties?.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] }).Statement;
        for (const s of statements.filter((st) => JSON.stringify(st.Action).includes('cloudformation:'))) {
          expect({ action: s.Action, resource: s.Resource }).toEqual({ action: 'cloudformation:SignalResource', resource: { Ref: 'AWS::StackId' } });
        }
        if (statements.some((st) => st.Action === 'cloudformation:SignalResource')) granted++;
      }
    }
    expect(granted).toBe(config.availabilityZones.length * config.mta.slotsPerAz + config.proxy.proxies.length);
  });
});

// AmazonSSMManagedInstanceCore, which every slot role carries for Session Manager and Run Command, allows
// ssm:GetParameter(s) on every parameter of the account and region (other apps' SecureStrings under aws/ssm too).
describe('no slot may read an SSM parameter but its own configs', () => {
  const refs = (value: unknown): string[] => [...JSON.stringify(value).matchAll(/\{"Ref":"([^":]+)"\}/g)].map((m) => m[1] as string);
  const cases: [string, () => ReturnType<typeof build>][] = [
    ['prod', () => build('prod', { nag: false })],
    ['rehearsal with HA pairs', () => build('rehearsal', { config: haEnvironment('rehearsal'), nag: false })],
  ];
  test.each(cases)('%s: each role denies every GetParameter* but on its config (and a pair node\'s mirror config)', (_name, make) => {
    const { config, stacks } = make();
    let checked = 0;
    for (const t of [template(stacks.mta), template(stacks.proxy)]) {
      const parameters = resources(t, 'AWS::SSM::Parameter');
      const policies = Object.values(resources(t, 'AWS::IAM::Policy'));
      for (const launchTemplate of Object.values(resources(t, 'AWS::EC2::LaunchTemplate'))) {
        const env = instanceEnv(launchTemplate);
        const data = launchTemplate.Properties?.LaunchTemplateData as { IamInstanceProfile: { Arn: { 'Fn::GetAtt': [string, string] } } };
        const profile = resources(t, 'AWS::IAM::InstanceProfile')[data.IamInstanceProfile.Arn['Fn::GetAtt'][0]];
        const roleId = refs(profile?.Properties?.Roles)[0] as string;
        expect(JSON.stringify(resources(t, 'AWS::IAM::Role')[roleId]?.Properties?.ManagedPolicyArns)).toContain('AmazonSSMManagedInstanceCore');
        const statements = policies
          .filter((p) => refs(p.Properties?.Roles).includes(roleId))
          .flatMap((p) => (p.Properties?.PolicyDocument as { Statement: Record<string, unknown>[] }).Statement);
        const denies = statements.filter((st) => st.Effect === 'Deny');
        expect(denies.map((st) => st.Action)).toEqual([['ssm:GetParameter', 'ssm:GetParameters', 'ssm:GetParametersByPath', 'ssm:GetParameterHistory']]);
        const own = [env.VOLLEY_CONFIG_PARAMETER, env.VOLLEY_MIRROR_CONFIG_PARAMETER].filter((n) => n !== undefined);
        const ownIds = own.map((name) => Object.entries(parameters).find(([, p]) => p.Properties?.Name === name)?.[0]);
        expect(refs(denies[0]?.NotResource)).toEqual(ownIds);
        checked++;
      }
    }
    const mtaNodes = config.availabilityZones.length * config.mta.slotsPerAz * (config.mta.ha ? 2 : 1);
    expect(checked).toBe(mtaNodes + config.proxy.proxies.length);
  });
});

describe('the environment file is the one source of the topology', () => {
  const dev = loadEnvironment('dev', REPO_ROOT);
  const base = readFileSync(join(REPO_ROOT, dev.volleyConfigFile), 'utf8');

  test('a VMTA on an IP no proxy holds stops synth, naming it', () => {
    const stray = base.replace('ip: 10.40.0.12', 'ip: 10.40.0.99');
    expect(() => mtaConfigText(dev, stray)).toThrow(/VMTA ip2 \(10\.40\.0\.99\) not held by any proxy/);
  });

  test('a hand-written proxies: section in the git config stops synth', () => {
    expect(() => mtaConfigText(dev, `${base}proxies: { servers: [] }\n`)).toThrow(/remove the proxies: section/);
  });

  test('an s3 sink in the git config keeps its own settings but must name the environment\'s bucket, prefix and region', () => {
    const bucket = `volley-dev-events-${dev.account}-${dev.region}`;
    const own = (sink: string) => `${base}events:\n  sinks:\n    - { name: hooks, type: sqlite }\n    - ${sink}\n`;
    const loaded = parseConfig(mtaConfigText(dev, own(`{ name: archive, type: s3, bucket: ${bucket}, prefix: mta, keep_local: true, ship: [sqlite] }`)), 'dev');
    expect(loaded.events.sinks.map((s) => s.name)).toEqual(['hooks', 'archive']);
    expect(loaded.events.sinks[1]).toMatchObject({ bucket, prefix: 'mta', region: dev.region, keepLocal: true, ship: ['sqlite'] });
    // Other sinks are kept, and the generated one joins them.
    expect(parseConfig(mtaConfigText(dev, `${base}events:\n  sinks:\n    - { name: hooks, type: sqlite }\n`), 'dev').events.sinks.map((s) => `${s.name}:${s.type}`)).toEqual(['hooks:sqlite', 's3:s3']);
    expect(() => mtaConfigText(dev, own('{ name: archive, type: s3, bucket: somewhere-else, prefix: mta }'))).toThrow(/bucket must be volley-dev-events-/);
    expect(() => mtaConfigText(dev, own(`{ name: archive, type: s3, bucket: ${bucket} }`))).toThrow(/prefix must be "mta"/);
    expect(() => mtaConfigText(dev, own(`{ name: archive, type: s3, bucket: ${bucket}, prefix: mta, endpoint: "http://127.0.0.1:9000" }`))).toThrow(/endpoint must not be set/);
  });

  test('a drain section in the git config keeps its own tuning; its listen, secret and sources come from the environment file', () => {
    const loaded = parseConfig(mtaConfigText(dev, `${base}drain:\n  dedupe_retention: 2d\n  max_batch_bytes: 8MB\n`), 'dev').drain;
    expect(loaded).toMatchObject({ dedupeRetentionMs: 2 * 86_400_000, maxBatchBytes: 8 * 1024 * 1024, listen: { port: dev.mta.drainPort }, secretFile: INSTANCE_FILES.drainSecret });
    expect(() => mtaConfigText(dev, `${base}drain:\n  listen: { port: 9443 }\n`)).toThrow(/remove drain\.listen: generated from stacks\/environments\/dev\.ts/);
    expect(() => mtaConfigText(dev, `${base}drain:\n  accept_from: [0.0.0.0/0]\n  secret_file: /tmp/s\n`)).toThrow(/remove drain\.secret_file, drain\.accept_from/);
  });

  test('an inbound section in the git config keeps its own tuning; its address, port and domains come from mta.inbound, and without mta.inbound it stops synth', () => {
    const declared = { ...dev, mta: { ...dev.mta, inbound: { port: 2525, domains: ['bounces.dev.mail.example.com'] } } };
    const loaded = parseConfig(mtaConfigText(declared, `${base}inbound:\n  max_message_size: 2MB\n  max_report_recipients: 50\n`), 'dev').inbound;
    expect(loaded).toMatchObject({ address: '0.0.0.0', port: 2525, domains: ['bounces.dev.mail.example.com'], maxMessageSize: 2 * 1024 * 1024, maxReportRecipients: 50 });
    expect(() => mtaConfigText(declared, `${base}inbound:\n  port: 25\n  domains: [bounces.dev.mail.example.com]\n`)).toThrow(/remove inbound\.port, inbound\.domains: generated from stacks\/environments\/dev\.ts \(mta\.inbound/);
    expect(() => mtaConfigText(declared, `${base}inbound:\n  address: 127.0.0.1\n`)).toThrow(/remove inbound\.address: generated/);
    expect(() => mtaConfigText(dev, `${base}inbound:\n  domains: [bounces.dev.mail.example.com]\n`)).toThrow(/remove the inbound: section, or declare mta\.inbound in stacks\/environments\/dev\.ts/);
  });

  test('a generated config the MTA\'s loader refuses stops synth with the loader\'s message', () => {
    expect(() => mtaConfigText(dev, base.replace('default_pool: default', 'default_pool: nowhere'))).toThrow(/refused by the MTA's loader/);
  });
});

describe('the MTA side of the mirror mode (mta.ha, mta.mirrorMode)', () => {
  const published = (config: ReturnType<typeof haEnvironment>): { text: string; slots: { member: string | undefined; parameter: string | undefined }[] } => {
    const { app, stacks } = build(config.name, { config, nag: false });
    const assembly = app.synth();
    const text = readFileSync(join(assembly.directory, stacks.mta.publishedConfig.asset?.assetPath as string), 'utf8');
    const parameters = Object.values(resources(template(stacks.mta), 'AWS::EC2::LaunchTemplate')).map((lt) => instanceEnv(lt).VOLLEY_CONFIG_PARAMETER);
    return { text, slots: stacks.mta.slots.map((s, i) => ({ member: s.pairMember?.memberId, parameter: parameters[i] })) };
  };

  test('a sync pair environment: every MTA asks its mirror for a barrier (mirror.mode sync at the daemon\'s default socket), and every MTA node is a pair node, so the one published config is right for all', () => {
    const { text, slots } = published(haEnvironment('rehearsal', { mirrorMode: 'sync' }));
    expect(parseConfig(text, 'rehearsal MTA config').mirror).toEqual({ mode: 'sync', syncSocket: undefined, timeoutMs: 5000 });
    // No MTA node without a mirror daemon (which would refuse all intake in sync mode), and all read the one parameter.
    expect(slots.length).toBe(4);
    for (const s of slots) expect(s).toEqual({ member: expect.any(String), parameter: '/volley/rehearsal/mta/config-url' });
  });

  test('async pairs and single slots: no mirror section (intake acknowledges on its own fsync)', () => {
    expect(parseConfig(published(haEnvironment('rehearsal', { mirrorMode: 'async' })).text, 'async').mirror).toBeUndefined();
    expect(parseConfig(published(haEnvironment('rehearsal')).text, 'default').mirror).toBeUndefined();
    expect(parseConfig(mtaConfigText(loadEnvironment('rehearsal', REPO_ROOT), readFileSync(join(REPO_ROOT, 'assets/config/volley.rehearsal.yaml'), 'utf8')), 'single').mirror).toBeUndefined();
  });

  test('the git config may tune mirror.timeout of a sync environment; its mode and socket, or any mirror section where no sync mirror runs, stop synth', () => {
    const base = readFileSync(join(REPO_ROOT, 'assets/config/volley.rehearsal.yaml'), 'utf8');
    const sync = haEnvironment('rehearsal', { mirrorMode: 'sync' });
    expect(parseConfig(mtaConfigText(sync, `${base}mirror:\n  timeout: 8s\n`), 'sync').mirror).toEqual({ mode: 'sync', syncSocket: undefined, timeoutMs: 8000 });
    expect(() => mtaConfigText(sync, `${base}mirror:\n  mode: async\n  sync_socket: /tmp/s\n`)).toThrow(/remove mirror\.mode, mirror\.sync_socket: generated from stacks\/environments\/rehearsal\.ts/);
    expect(() => mtaConfigText(loadEnvironment('rehearsal', REPO_ROOT), `${base}mirror:\n  timeout: 8s\n`)).toThrow(/remove the mirror: section: .* runs no sync mirror/);
  });

  test('the MTA waits longer than the mirror\'s sync_timeout (its policy answers first): generated for a long one, and a git timeout too short for it stops synth', () => {
    const base = readFileSync(join(REPO_ROOT, 'assets/config/volley.rehearsal.yaml'), 'utf8');
    const long = haEnvironment('rehearsal', { mirrorMode: 'sync', mirrorSyncTimeout: '4s' });
    expect(parseConfig(mtaConfigText(long, base), 'long').mirror).toEqual({ mode: 'sync', syncSocket: undefined, timeoutMs: 7000 });
    expect(() => mtaConfigText(long, `${base}mirror:\n  timeout: 5s\n`)).toThrow(/mirror\.timeout \(5s\) must be at least mta\.mirrorSyncTimeout \+ 3s \(7000 ms\)/);
    expect(parseConfig(mtaConfigText(long, `${base}mirror:\n  timeout: 9s\n`), 'tuned').mirror?.timeoutMs).toBe(9000);
    // The default sync_timeout (2s) fits the MTA's default wait: nothing generated.
    expect(parseConfig(mtaConfigText(haEnvironment('rehearsal', { mirrorMode: 'sync', mirrorSyncPolicy: 'degrade' }), base), 'short').mirror?.timeoutMs).toBe(5000);
  });
});
