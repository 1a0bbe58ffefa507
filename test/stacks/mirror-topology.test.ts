// The mirror configs synth generates for a pair's two nodes, run: each node's
// files fetched by `volley mirror-secret fetch`'s code from one (mocked)
// Secrets Manager secret, then two real mirror daemons started from the
// generated configs, with only the machine's paths and the two mirror IPs
// moved (to 127.0.0.1 and 127.0.0.2, each node on its own address and the
// environment's mirror port, as on AWS). The primary replicates to the
// secondary over the CA-checked link: the generated listen/peer, peer_ca and
// the certificate issued for the node's own IP fit together.
import { GetSecretValueCommand, PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { fetchMirrorFiles, initMirrorSecret, mirrorFiles } from '../../runtime/bootstrap/mirror-secret';
import { parseMirrorConfig } from '../../runtime/mirror/config';
import { MirrorDaemon } from '../../runtime/mirror/daemon';
import { writeState } from '../../runtime/mirror/state';
import { mtaPairs, type MtaPair } from '../../stacks/environments/layout';
import { mirrorConfigText, PERSISTENT_PATH } from '../../stacks/mirror-topology';
import { TopologyError } from '../../stacks/topology';
import { getFreePort } from '../helpers/postfix-tools';
import { captureLogger, waitUntil } from '../helpers/proxy-fixtures';
import { tempDir } from '../helpers/tmp';
import { haEnvironment } from './helpers';

const base = tempDir('volley-mirror-topology-');
const client = new SecretsManagerClient({ region: 'eu-west-1' });
const sm = mockClient(client);
const ID = 'volley/staging/mirror';
const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
const running: MirrorDaemon[] = [];

afterEach(async () => {
  for (const d of running.splice(0)) await d.stop();
});

test('the two nodes\' generated configs link up: the primary replicates its persistent path to the secondary over the CA-checked link', async () => {
  let secret = JSON.stringify({ secret: 'S'.repeat(64) });
  sm.on(GetSecretValueCommand, { SecretId: ID }).callsFake(async () => ({ SecretString: secret }));
  sm.on(PutSecretValueCommand, { SecretId: ID }).callsFake(async (input: { SecretString: string }) => ((secret = input.SecretString), {}));
  await initMirrorSecret(client, ID, ID);

  const port = await getFreePort();
  const env = haEnvironment('staging', { mirrorPort: port });
  const real = mtaPairs(env.name, env.network.vpcCidr, env.availabilityZones, env.mta.slotsPerAz)[0] as MtaPair;
  // Loopback stands in for the two mirror interfaces; everything else is as generated.
  const pair: MtaPair = { ...real, a: { ...real.a, mirrorIp: '127.0.0.1' }, b: { ...real.b, mirrorIp: '127.0.0.2' } };
  const daemons: Record<'a' | 'b', { daemon: MirrorDaemon; root: string }> = {} as never;
  for (const member of [pair.b, pair.a]) {
    const machine = join(base, member.member);
    const root = join(machine, 'var-lib-volley');
    mkdirSync(join(machine, 'etc'), { recursive: true });
    mkdirSync(root, { recursive: true });
    const doc = parseDocument(mirrorConfigText(env, pair, member).replaceAll('/etc/volley/', `${machine}/etc/`).replace(PERSISTENT_PATH, root));
    // The lease and the MTA unit are AWS's and systemd's; this test is about the link.
    doc.delete('arbiter');
    doc.delete('promote_command');
    doc.set('admin_listen', '127.0.0.1:0');
    const file = join(machine, 'etc', 'mirror.yaml');
    writeFileSync(file, doc.toString());
    const config = parseMirrorConfig(readFileSync(file, 'utf8'), file);
    expect(await fetchMirrorFiles(client, ID, mirrorFiles(config, file), me, () => undefined)).toBe('written');
    if (member.member === 'a') writeState(root, { role: 'primary', epoch: 1, caughtUp: false });
    const daemon = new MirrorDaemon(config, captureLogger().logger);
    await daemon.start();
    running.push(daemon);
    daemons[member.member] = { daemon, root };
  }

  mkdirSync(join(daemons.a.root, 'spool', 'p0'), { recursive: true });
  writeFileSync(join(daemons.a.root, 'spool/p0/000000000001.seg'), 'a record\n');
  writeFileSync(join(daemons.a.root, 'node-id'), `${pair.slotId}\n`);
  await waitUntil(() => daemons.b.daemon.status().caught_up, 15_000, () => JSON.stringify([daemons.a.daemon.status(), daemons.b.daemon.status()]));
  expect(readFileSync(join(daemons.b.root, 'spool/p0/000000000001.seg'), 'utf8')).toBe('a record\n');
  expect(readFileSync(join(daemons.b.root, 'node-id'), 'utf8')).toBe(`${pair.slotId}\n`);
  expect(daemons.b.daemon.status().peer).toBe(`127.0.0.1:${port}`);
});

test('a sync pair\'s configs carry its sync_policy and sync_timeout (the mirror\'s defaults when the environment names none); an async pair\'s carry neither', () => {
  const config = (extra: Record<string, unknown>): ReturnType<typeof parseMirrorConfig> => {
    const env = haEnvironment('staging', extra);
    const pair = mtaPairs(env.name, env.network.vpcCidr, env.availabilityZones, env.mta.slotsPerAz)[0] as MtaPair;
    const text = mirrorConfigText(env, pair, pair.b);
    return parseMirrorConfig(text, 'mirror.yaml');
  };
  const text = (extra: Record<string, unknown>): string => {
    const env = haEnvironment('staging', extra);
    const pair = mtaPairs(env.name, env.network.vpcCidr, env.availabilityZones, env.mta.slotsPerAz)[0] as MtaPair;
    return mirrorConfigText(env, pair, pair.a);
  };
  expect(config({ mirrorMode: 'sync', mirrorSyncPolicy: 'degrade', mirrorSyncTimeout: '750ms' })).toMatchObject({ mode: 'sync', syncPolicy: 'degrade', syncTimeoutMs: 750 });
  // Defaults written out: the file on the instance says that a silent secondary stops intake.
  expect(text({ mirrorMode: 'sync' })).toMatch(/^sync_timeout: 2s\nsync_policy: block$/m);
  expect(config({ mirrorMode: 'sync' })).toMatchObject({ mode: 'sync', syncPolicy: 'block', syncTimeoutMs: 2000 });
  expect(text({ mirrorMode: 'async' })).not.toMatch(/sync_(policy|timeout)/);
  expect(text({})).not.toMatch(/sync_(policy|timeout)/);
});

test('a config for a node of an environment without pairs is a topology error', () => {
  const env = haEnvironment('staging');
  const pair = mtaPairs(env.name, env.network.vpcCidr, env.availabilityZones, 1)[0] as MtaPair;
  expect(() => mirrorConfigText({ ...env, mta: { ...env.mta, ha: false } }, pair, pair.a)).toThrow(TopologyError);
});
