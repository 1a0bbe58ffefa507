// The rehearsal environment, synthesised offline with this checkout's packaged
// runtime: what each of its instances receives is read back from the cloud
// assembly (user data, parameters, asset objects) and is what a deploy would
// ship: four instances, configs their own daemons load, a runtime zip holding
// install.sh, the units and the CLI.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { packageRuntime } from '../../bin/package-asset';
import { secretFilePath } from '../../runtime/bootstrap/secret-files';
import { parseProxyConfig } from '../../runtime/proxy/config';
import { parseConfig } from '../../runtime/shared/config/load';
import { tempDir } from '../helpers/tmp';
import { mtaPairs } from '../../stacks/environments/layout';
import { haEnvironment } from '../stacks/helpers';
import { iamMatch } from './fake-aws/s3';
import { pairMember, readAssembly, REPO_ROOT, type RehearsalAssembly, secretArn, synthRehearsal } from './assembly';

const dir = tempDir('volley-rehearsal-assembly-');
// dist/volley.js is built by `npm test`'s pretest; packaged aside so dist/asset is not raced.
const packageDir = packageRuntime({ repoRoot: REPO_ROOT, build: false, outDir: join(dir, 'asset') });
let built: RehearsalAssembly;
beforeAll(() => {
  built = synthRehearsal({ packageDir });
});

function object(url: string): Buffer {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  const found = built.objects.find((o) => o.bucket === m?.[1] && o.key === m?.[2]);
  if (!found) throw new Error(`no asset object at ${url}`);
  return found.body();
}

test('two MTA slots in two AZs and two proxies, each with its own slot and its own config parameter', () => {
  const byRole = (role: string) => built.instances.filter((i) => i.role === role);
  expect(byRole('mta').map((i) => i.slot).sort()).toEqual(['rehearsal-mta-eu-west-1a-1', 'rehearsal-mta-eu-west-1b-1']);
  expect(byRole('proxy')).toHaveLength(2);
  for (const i of built.instances) {
    expect(built.parameters.has(i.instanceEnv.VOLLEY_CONFIG_PARAMETER as string)).toBe(true);
    expect(i.instanceEnv).toMatchObject({ VOLLEY_REGION: 'eu-west-1', VOLLEY_STACK: i.stack, VOLLEY_PROXY_LINK_SECRET: secretArn(built.env, 'volley/rehearsal/proxy-link') });
    // Where an MTA's start fetches the drain secret from (the rehearsal's fake Secrets Manager holds it); proxies are not told.
    expect(i.instanceEnv.VOLLEY_DRAIN_SECRET_ID).toBe(i.role === 'mta' ? secretArn(built.env, 'volley/rehearsal/drain') : undefined);
    // Resolved throughout: nothing of CloudFormation's syntax is left for bash to see.
    expect(i.userData).not.toMatch(/Fn::|"Ref"|\$\{Token/);
  }
  // The link secret every slot reads, the CA key only proxies read, and the drain secret only MTAs read.
  expect([...built.secrets.keys()].sort()).toEqual(['volley/rehearsal/drain', 'volley/rehearsal/proxy-ca-key', 'volley/rehearsal/proxy-link']);
});

test('the MTAs\' config is an S3 object named by their parameter, loaded by the MTA\'s loader with the rehearsal\'s throttle', () => {
  const url = built.parameters.get('/volley/rehearsal/mta/config-url') as string;
  const config = parseConfig(object(url).toString('utf8'), url);
  expect(config.proxies?.servers.map((s) => s.host).sort()).toEqual(['10.60.0.10', '10.60.1.10']);
  expect(JSON.stringify(config.throttles)).toContain('throttled.rehearsal.test');
  // Event-log files close within the run and the environment's s3 sink looks for them often, so the rehearsal sees them shipped.
  expect(config.events.attemptLog.maxAgeMs).toBe(5_000);
  // And the operator's webhook, whose secret and receiver CA are files of the environment's file secret (mta.fileSecrets).
  expect(config.events.sinks).toEqual([
    expect.objectContaining({ type: 's3', bucket: 'volley-rehearsal-events-333333333333-eu-west-1', prefix: 'mta', region: 'eu-west-1', intervalMs: 2_000 }),
    expect.objectContaining({ type: 'webhook', name: 'hooks', secretFiles: ['/etc/volley/secrets/webhook/hooks.secret'], caFile: '/etc/volley/secrets/webhook/receiver-ca.pem' }),
  ]);
  expect(config.dkim).toEqual([expect.objectContaining({ domain: 'sender.rehearsal.test', privateKeyFile: '/etc/volley/secrets/dkim/sender.rehearsal.test.pem' })]);
  // Every one of them is a path the fetch writes (the MTA refuses to start without them).
  for (const f of [...config.dkim.map((k) => k.privateKeyFile), ...config.events.sinks.flatMap((k) => (k.type === 'webhook' ? [...k.secretFiles, k.caFile ?? ''] : []))]) {
    expect(secretFilePath(f)).toEqual({ relative: expect.any(String) });
  }
});

test('each proxy\'s config parameter loads in the proxy\'s loader, listening on its ENI\'s primary IP', () => {
  for (const p of built.env.proxy.proxies) {
    const text = built.parameters.get(`/volley/rehearsal/proxy/${p.name}/config`) as string;
    expect(parseProxyConfig(text, p.name)).toMatchObject({ listen: { address: p.interfaceIp }, sendingIps: p.sendingIps });
  }
});

test('the runtime zip the user data downloads holds install.sh, the CLI and the units', () => {
  const urls = new Set(built.instances.map((i) => /aws s3 cp '(s3:\/\/[^']+\.zip)'/.exec(i.userData)?.[1]));
  // One per tier: each stack publishes it under its own prefix, the only one its roles may read; the same bytes.
  expect(urls.size).toBe(2);
  const [first, second] = [...urls].map((u) => object(u as string));
  expect(first?.equals(second as Buffer)).toBe(true);
  const zip = join(dir, 'runtime.zip');
  writeFileSync(zip, first as Buffer);
  const listing = execFileSync('unzip', ['-Z1', zip], { encoding: 'utf8' }).split('\n');
  expect(listing).toEqual(expect.arrayContaining(['install.sh', 'bin/volley', 'lib/volley.js', 'systemd/volley-mta.service', 'systemd/volley-config-sync.timer']));
});

test('a template construct the rehearsal cannot resolve stops it with a coded error, never a guess', () => {
  const app = new App();
  const assembly = app.synth();
  const fake = {
    directory: assembly.directory,
    stacks: [{ stackName: 'S', template: { Resources: { T: { Type: 'AWS::EC2::LaunchTemplate', Properties: { LaunchTemplateData: { UserData: { 'Fn::GetAtt': ['X', 'Y'] } } } } } } }],
  } as unknown as Parameters<typeof readAssembly>[0];
  expect(() => readAssembly(fake, built.env, packageDir)).toThrow(expect.objectContaining({ code: 'EREHEARSALASSEMBLY', message: 'S: Fn::GetAtt is not resolved by the rehearsal' }));
});

test('each MTA slot has one volume in its AZ, tagged with its slot, as the bootstrap looks for it', () => {
  const mtas = built.instances.filter((i) => i.role === 'mta');
  expect(built.volumes.map((v) => ({ slot: v.slot, az: v.availabilityZone })).sort((a, b) => a.slot.localeCompare(b.slot))).toEqual(
    mtas.map((i) => ({ slot: i.slot, az: `eu-west-1${i.slot.includes('1a') ? 'a' : 'b'}` })).sort((a, b) => a.slot.localeCompare(b.slot)),
  );
});

test('each instance carries its own role\'s S3 statements, resolved: an MTA slot may write the events bucket under its own prefix only', () => {
  const mtas = built.instances.filter((i) => i.role === 'mta');
  expect(new Set(built.instances.map((i) => i.iamRole.name)).size).toBe(built.instances.length);
  for (const i of mtas) {
    const writes = i.iamRole.s3.filter((g) => g.actions.includes('s3:PutObject'));
    expect(writes.flatMap((g) => g.resources)).toEqual([`arn:aws:s3:::volley-rehearsal-events-333333333333-eu-west-1/mta/rehearsal/${i.instanceEnv.VOLLEY_NODE_ID}/*`]);
    expect(i.instanceEnv.VOLLEY_NODE_ID).toBe(i.slot);
  }
});

// What the fake Secrets Manager enforces, from the resolved statements: each instance's fetches read through these grants.
test('each instance carries its own role\'s Secrets Manager statements, resolved: only an MTA slot may read the operator\'s file secrets (mta.fileSecrets)', () => {
  const may = (i: (typeof built.instances)[number], arn: string): boolean => i.iamRole.secretsManager.some((g) => g.actions.some((a) => iamMatch(a, 'secretsmanager:GetSecretValue')) && g.resources.some((r) => iamMatch(r, arn)));
  const fileSecrets = built.env.mta.fileSecrets ?? [];
  expect(fileSecrets.length).toBeGreaterThan(0);
  for (const i of built.instances) {
    for (const name of fileSecrets) expect({ slot: i.slot, name, may: may(i, secretArn(built.env, name)) }).toEqual({ slot: i.slot, name, may: i.role === 'mta' });
    // Every instance reads the proxy link's secret; only proxies its CA key.
    expect({ slot: i.slot, link: may(i, secretArn(built.env, 'volley/rehearsal/proxy-link')), caKey: may(i, secretArn(built.env, 'volley/rehearsal/proxy-ca-key')) }).toEqual({ slot: i.slot, link: true, caKey: i.role === 'proxy' });
    // Nor another name that the file secret's pattern could be read to cover.
    for (const name of fileSecrets) expect(may(i, secretArn(built.env, `${name}-x`))).toBe(false);
  }
});

// What the fake S3 enforces, from the resolved statements: the drill and the boots read through these grants.
test('each instance reads from the CDK assets bucket what its own stack publishes for it (the runtime zip its user data downloads; an MTA, its config file and the next deploy\'s), nothing else', () => {
  const bucket = 'cdk-hnb659fds-assets-333333333333-eu-west-1';
  const mtaConfig = (built.parameters.get('/volley/rehearsal/mta/config-url') as string).replace(`s3://${bucket}/`, '');
  for (const i of built.instances) {
    const reads = i.iamRole.s3.filter((g) => JSON.stringify(g.resources).includes(bucket));
    expect(reads).toEqual([{ actions: ['s3:GetObject'], resources: (i.role === 'mta' ? ['zip', 'yaml'] : ['zip']).map((k) => `arn:aws:s3:::${bucket}/${i.stack}/*.${k}`) }]);
    const may = (key: string): boolean => i.iamRole.s3.some((g) => g.actions.some((a) => iamMatch(a, 's3:GetObject')) && g.resources.some((r) => iamMatch(r, `arn:aws:s3:::${bucket}/${key}`)));
    const runtime = /'s3:\/\/([^']+)' '\/tmp\/volley-runtime\.zip'/.exec(i.userData)?.[1]?.replace(`${bucket}/`, '') as string;
    const objects = built.objects.filter((o) => o.bucket === bucket).map((o) => o.key);
    expect(objects).toContain(runtime);
    expect({
      slot: i.slot,
      runtime: may(runtime),
      config: may(mtaConfig),
      nextConfig: may(mtaConfig.replace(/[^/]+$/, 'next-deploy.yaml')),
      // Its own stack's template (every slot's user data, the inline configs) and every other stack's object.
      readable: objects.filter((k) => may(k)).sort(),
    }).toEqual({
      slot: i.slot,
      runtime: true,
      config: i.role === 'mta',
      nextConfig: i.role === 'mta',
      readable: (i.role === 'mta' ? [runtime, mtaConfig] : [runtime]).sort(),
    });
  }
});

test('with mta.ha: four pair nodes, each pair node\'s mirror interface at its fixed IP in its own AZ (a mirror ENI names its one IP as PrivateIpAddress), and the mirror secret', () => {
  const ha = synthRehearsal({ packageDir, env: haEnvironment('rehearsal') });
  const nodes = mtaPairs('rehearsal', ha.env.network.vpcCidr, ha.env.availabilityZones, ha.env.mta.slotsPerAz).flatMap((p) => [p.a, p.b]);
  expect(ha.instances.filter((i) => i.role === 'mta').map((i) => i.slot).sort()).toEqual(nodes.map((n) => n.memberId).sort());
  for (const n of nodes) {
    expect(ha.interfaces.filter((e) => e.slot === n.memberId)).toEqual([expect.objectContaining({ availabilityZone: n.availabilityZone, privateIpAddresses: [n.mirrorIp] })]);
    expect(pairMember(ha.env, n.memberId)?.availabilityZone).toBe(n.availabilityZone);
  }
  expect(ha.secrets.has('volley/rehearsal/mirror')).toBe(true);
});
