import { EnvironmentConfigError, environmentNames, loadEnvironment, validateEnvironment } from '../../../stacks/environments';
import { dev } from '../../../stacks/environments/dev';
import { prod } from '../../../stacks/environments/prod';
import { planSubnets } from '../../../stacks/environments/layout';
import { REPO_ROOT } from '../helpers';
import { drainSecretName, mirrorSecretName, proxyCaKeySecretName, proxyLinkSecretName } from '../../../stacks/secrets-stack';

type Mutable = Record<string, unknown>;
const clone = (raw: object): Mutable => JSON.parse(JSON.stringify(raw)) as Mutable;

function expectFieldError(mutate: (raw: Mutable) => void, field: string, base: object = prod): void {
  const raw = clone(base);
  mutate(raw);
  let caught: unknown;
  try {
    validateEnvironment(raw, REPO_ROOT);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(EnvironmentConfigError);
  expect((caught as EnvironmentConfigError).field).toBe(field);
  expect((caught as Error).message).toContain(field);
}

const at = (raw: Mutable, path: string): Mutable => path.split('.').reduce((o, k) => o[k] as Mutable, raw);

test('dev, staging and prod are valid', () => {
  expect(environmentNames()).toEqual(['dev', 'staging', 'prod', 'rehearsal']);
  for (const name of environmentNames()) expect(loadEnvironment(name, REPO_ROOT).name).toBe(name);
});

test('prod runs c6in.32xlarge MTAs and c6in.8xlarge proxies', () => {
  const config = loadEnvironment('prod', REPO_ROOT);
  expect(config.mta.instanceType).toBe('c6in.32xlarge');
  expect(config.proxy.instanceType).toBe('c6in.8xlarge');
});

test('an unknown environment names the choices', () => {
  expect(() => loadEnvironment('qa', REPO_ROOT)).toThrow('use one of dev, staging, prod');
});

test.each([
  ['account', (r: Mutable) => (r.account = '1234')],
  ['availabilityZones[1]', (r: Mutable) => ((r.availabilityZones as string[])[1] = 'eu-west-1b')],
  ['amiId', (r: Mutable) => (r.amiId = 'latest')],
  ['volleyConfigFile', (r: Mutable) => (r.volleyConfigFile = 'assets/config/missing.yaml')],
  ['network.allowedCidrs[0]', (r: Mutable) => (at(r, 'network').allowedCidrs = ['0.0.0.0/0'])],
  ['mta.instanceType', (r: Mutable) => (at(r, 'mta').instanceType = 'c6in.33xlarge')],
  ['mta.slotsPerAz', (r: Mutable) => delete at(r, 'mta').slotsPerAz],
  ['mta.volumeSlots', (r: Mutable) => (at(r, 'mta').slotsPerAz = 3)], // the new third slot of each AZ is not listed
  ['mta.volumeSlots', (r: Mutable) => (at(r, 'mta').volumeSlots = ['prod-mta-us-east-1a-1', 'prod-mta-us-east-1a-1'])],
  ['mta.drainPort', (r: Mutable) => delete at(r, 'mta').drainPort],
  ['mta', (r: Mutable) => (at(r, 'mta').drainPort = 8080)], // the API's port
  ['mta.volume.iops', (r: Mutable) => (at(r, 'mta.volume').sizeGiB = 20)], // 16000 IOPS > 500 × 20 GiB
  ['mta.volume.throughputMiBps', (r: Mutable) => (at(r, 'mta.volume').throughputMiBps = 5000)],
  ['proxy.proxies[1].sendingIps[2]', (r: Mutable) => ((at(r, 'proxy.proxies.1').sendingIps as string[])[2] = '10.60.0.20')],
  ['proxy.proxies[2].sendingIps[0]', (r: Mutable) => ((at(r, 'proxy.proxies.2').sendingIps as string[])[0] = '10.60.1.11')],
  ['proxy.proxies[0].interfaceIp', (r: Mutable) => (at(r, 'proxy.proxies.0').interfaceIp = '10.60.0.2')],
  ['proxy.proxies[0].availabilityZone', (r: Mutable) => (at(r, 'proxy.proxies.0').availabilityZone = 'us-east-1d')],
  ['ingress.deregistrationDelaySeconds', (r: Mutable) => (at(r, 'ingress').deregistrationDelaySeconds = 7200)],
  ['ingress.loadBalancers', (r: Mutable) => (at(r, 'ingress').loadBalancers = [{ name: 'nlb-a', weight: 0 }])],
  ['dns.smtpRecordName', (r: Mutable) => (at(r, 'dns').smtpRecordName = 'smtp.example.org')],
  ['storage.expireAfterDays', (r: Mutable) => (at(r, 'storage').expireAfterDays = 10)],
])('a bad %s fails with a message naming the field', (field, mutate) => {
  expectFieldError(mutate, field);
});

test('more sending IPs than one ENI of the proxy type can hold is refused', () => {
  // c6in.large: 10 IPv4 per ENI, one of them the primary.
  const ips = Array.from({ length: 10 }, (_, i) => `10.40.0.${20 + i}`);
  expectFieldError((r) => (at(r, 'proxy.proxies.0').sendingIps = ips), 'proxy.proxies[0].sendingIps', dev);
});

test('the subnet plan places public /24s first, then aligned private /20s', () => {
  expect(planSubnets('10.60.0.0/16', ['a', 'b', 'c'])).toEqual([
    { availabilityZone: 'a', publicCidr: '10.60.0.0/24', privateCidr: '10.60.16.0/20' },
    { availabilityZone: 'b', publicCidr: '10.60.1.0/24', privateCidr: '10.60.32.0/20' },
    { availabilityZone: 'c', publicCidr: '10.60.2.0/24', privateCidr: '10.60.48.0/20' },
  ]);
});

test('a slot missing from mta.volumeSlots is named, with what to add', () => {
  const raw = clone(prod);
  at(raw, 'mta').slotsPerAz = 3;
  expect(() => validateEnvironment(raw, REPO_ROOT)).toThrow("add 'prod-mta-us-east-1a-3', 'prod-mta-us-east-1b-3', 'prod-mta-us-east-1c-3'");
});

test('a removed slot still in mta.volumeSlots is valid: synth warns about its volume instead (mta-tier-stack.test.ts)', () => {
  const raw = clone(prod);
  at(raw, 'mta').slotsPerAz = 1;
  expect(validateEnvironment(raw, REPO_ROOT).mta.volumeSlots).toHaveLength(6);
});

describe('mta.ha: slots as HA pairs', () => {
  // prod as an operator turns pairs on: ha, the mirror port, and both nodes' volumes listed.
  const paired = (): Mutable => {
    const raw = clone(prod);
    const mta = at(raw, 'mta');
    const slots = mta.volumeSlots as string[];
    Object.assign(mta, { ha: true, mirrorPort: 7627, volumeSlots: [...slots, ...slots.map((s) => `${s}-b`)] });
    return raw;
  };

  test('a paired prod is valid and keeps its fields', () => {
    expect(validateEnvironment(paired(), REPO_ROOT).mta).toMatchObject({ ha: true, mirrorPort: 7627 });
  });

  test.each([
    ['mta.ha', (r: Mutable) => (at(r, 'mta').ha = 'yes')],
    ['mta.mirrorPort', (r: Mutable) => delete at(r, 'mta').mirrorPort],
    ['mta', (r: Mutable) => (at(r, 'mta').mirrorPort = 8443)], // the drain port
    ['mta.mirrorMode', (r: Mutable) => (at(r, 'mta').mirrorMode = 'semi-sync')],
    ['mta.mirrorSyncPolicy', (r: Mutable) => Object.assign(at(r, 'mta'), { mirrorMode: 'sync', mirrorSyncPolicy: 'wait' })],
    ['mta.mirrorSyncTimeout', (r: Mutable) => Object.assign(at(r, 'mta'), { mirrorMode: 'sync', mirrorSyncTimeout: '2 seconds' })],
    ['mta.mirrorSyncTimeout', (r: Mutable) => Object.assign(at(r, 'mta'), { mirrorMode: 'sync', mirrorSyncTimeout: 2000 })],
    ['mta.mirrorSyncTimeout', (r: Mutable) => Object.assign(at(r, 'mta'), { mirrorMode: 'sync', mirrorSyncTimeout: '0s' })],
    ['mta.volumeSlots', (r: Mutable) => (at(r, 'mta').volumeSlots = (at(r, 'mta').volumeSlots as string[]).filter((s) => !s.endsWith('-b')))],
  ])('a bad %s is refused, naming the field', (field, mutate) => {
    expectFieldError(mutate, field, paired());
  });

  test('mirror settings without ha are refused rather than ignored', () => {
    expectFieldError((r) => (at(r, 'mta').mirrorPort = 7627), 'mta.mirrorPort');
    expectFieldError((r) => (at(r, 'mta').mirrorMode = 'sync'), 'mta.mirrorMode');
    expectFieldError((r) => (at(r, 'mta').mirrorSyncPolicy = 'degrade'), 'mta.mirrorSyncPolicy');
    expectFieldError((r) => (at(r, 'mta').mirrorSyncTimeout = '2s'), 'mta.mirrorSyncTimeout');
  });

  test('the sync policy and timeout are read with mirrorMode sync only, and kept', () => {
    const raw = paired();
    Object.assign(at(raw, 'mta'), { mirrorMode: 'sync', mirrorSyncPolicy: 'degrade', mirrorSyncTimeout: '750ms' });
    expect(validateEnvironment(raw, REPO_ROOT).mta).toMatchObject({ mirrorMode: 'sync', mirrorSyncPolicy: 'degrade', mirrorSyncTimeout: '750ms' });
    // An async pair never waits for its secondary: a policy for that wait would be silently ignored.
    expectFieldError((r) => Object.assign(at(r, 'mta'), { mirrorSyncPolicy: 'degrade' }), 'mta.mirrorSyncPolicy', paired());
    expectFieldError((r) => Object.assign(at(r, 'mta'), { mirrorMode: 'async', mirrorSyncTimeout: '2s' }), 'mta.mirrorSyncTimeout', paired());
  });

  test('the missing second volumes are named, with what to add', () => {
    const raw = paired();
    at(raw, 'mta').volumeSlots = (at(raw, 'mta').volumeSlots as string[]).filter((s) => s !== 'prod-mta-us-east-1a-1-b');
    expect(() => validateEnvironment(raw, REPO_ROOT)).toThrow("add 'prod-mta-us-east-1a-1-b'");
  });
});

describe('mta.fileSecrets: the operator\'s secrets of MTA files', () => {
  const withFiles = (names: unknown): Mutable => {
    const raw = clone(prod);
    at(raw, 'mta').fileSecrets = names;
    return raw;
  };

  test('this environment\'s names are kept', () => {
    expect(validateEnvironment(withFiles(['volley/prod/dkim-keys', 'volley/prod/webhooks/billing']), REPO_ROOT).mta.fileSecrets).toEqual(['volley/prod/dkim-keys', 'volley/prod/webhooks/billing']);
  });

  test.each([
    ['another environment\'s', ['volley/dev/dkim-keys'], /must start with volley\/prod\//],
    ['no volley/<env>/ prefix', ['dkim-keys'], /a Secrets Manager name volley\/prod\/<name>/],
    ['a character Secrets Manager refuses', ['volley/prod/dkim keys'], /a Secrets Manager name/],
    ['the stack\'s proxy CA key (an MTA must never read it)', ['volley/prod/proxy-ca-key'], /names a secret the stack creates/],
    ['the stack\'s drain secret', ['volley/prod/drain'], /names a secret the stack creates/],
    ['a name ending like the ARN suffix', ['volley/prod/keys-abcdef'], /six characters/],
    ['not a list', 'volley/prod/dkim-keys', /must be a list/],
  ])('%s is refused, naming the field', (_, names, problem) => {
    const raw = withFiles(names);
    expect(() => validateEnvironment(raw, REPO_ROOT)).toThrow(EnvironmentConfigError);
    expect(() => validateEnvironment(raw, REPO_ROOT)).toThrow(problem);
    expect(() => validateEnvironment(raw, REPO_ROOT)).toThrow(/mta\.fileSecrets/);
  });

  test('a repeated secret is refused', () => {
    expectFieldError((r) => (at(r, 'mta').fileSecrets = ['volley/prod/a', 'volley/prod/a']), 'mta.fileSecrets');
  });

  test('every secret the secrets stack creates is refused (the list of them is the stack\'s)', () => {
    for (const name of [proxyLinkSecretName('prod'), proxyCaKeySecretName('prod'), drainSecretName('prod'), mirrorSecretName('prod')]) {
      expect(() => validateEnvironment(withFiles([name]), REPO_ROOT)).toThrow('names a secret the stack creates');
    }
  });
});

describe('mta.inbound: the bounce and feedback-loop listener', () => {
  const withInbound = (inbound: unknown): Mutable => {
    const raw = clone(prod);
    at(raw, 'mta').inbound = inbound;
    return raw;
  };

  test('absent is valid (no listener), and a declared one is kept as written', () => {
    expect(validateEnvironment(clone(prod), REPO_ROOT).mta.inbound).toBeUndefined();
    expect(validateEnvironment(withInbound({ port: 2525, domains: ['bounces.mail.example.com', 'fbl.example.org'] }), REPO_ROOT).mta.inbound).toEqual({
      port: 2525,
      domains: ['bounces.mail.example.com', 'fbl.example.org'],
    });
    expect(loadEnvironment('rehearsal', REPO_ROOT).mta.inbound).toEqual({ port: 2525, domains: ['bounces.rehearsal.test'] });
  });

  test.each([
    ['mta.inbound.port', { domains: ['bounces.example.com'] }],
    ['mta.inbound.port', { port: 70000, domains: ['bounces.example.com'] }],
    ['mta', { port: 25, domains: ['bounces.example.com'] }], // the injection listener's port
    ['mta', { port: 8443, domains: ['bounces.example.com'] }], // the drain port
    ['mta.inbound.domains', { port: 2525, domains: [] }],
    ['mta.inbound.domains', { port: 2525 }],
    ['mta.inbound.domains[0]', { port: 2525, domains: ['Bounces.Example.com'] }],
    ['mta.inbound.domains[1]', { port: 2525, domains: ['bounces.example.com', 'bounces.example.com.'] }],
    ['mta.inbound.domains[0]', { port: 2525, domains: ['localhost'] }],
    ['mta.inbound.domains[0]', { port: 2525, domains: ['*.example.com'] }],
    ['mta.inbound.domains', { port: 2525, domains: ['bounces.example.com', 'bounces.example.com'] }],
  ])('a bad %s is refused, naming the field (%j)', (field, inbound) => {
    expectFieldError((r) => (at(r, 'mta').inbound = inbound), field);
  });

  test('the port clash message names inbound.port among the ports that must differ', () => {
    expect(() => validateEnvironment(withInbound({ port: 8025, domains: ['bounces.example.com'] }), REPO_ROOT)).toThrow(/adminPort, drainPort, inbound\.port must all differ/);
  });
});
