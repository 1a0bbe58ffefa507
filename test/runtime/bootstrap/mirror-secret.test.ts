// The HA mirror's secrets on a node of a pair: `volley mirror-secret init`
// adds the mirror CA to volley/<env>/mirror once; `fetch` writes the secret,
// the CA and a certificate for the node's mirror address where its mirror
// config names them. Secrets Manager is mocked (aws-sdk-client-mock), as in
// drain-secret.test.ts; the certificate is checked by a real TLS handshake on
// 127.0.0.1 with the check the mirror's dial makes (the CA, and the IP).
import { GetSecretValueCommand, PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer } from 'node:tls';
import { fetchMirrorFiles, initMirrorSecret, mirrorFiles } from '../../../runtime/bootstrap/mirror-secret';
import { parseMirrorConfig } from '../../../runtime/mirror/config';
import { errorCode } from '../../../runtime/shared/errors';
import { tempDir } from '../../helpers/tmp';

const ID = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:volley/staging/mirror-AbCdEf';
const client = new SecretsManagerClient({ region: 'eu-west-1' });
const sm = mockClient(client);
const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
const SECRET = 'M'.repeat(64);
const root = tempDir('volley-mirror-secret-');

function store(initial: object): { value: () => string } {
  let value = JSON.stringify(initial);
  sm.on(GetSecretValueCommand, { SecretId: ID }).callsFake(async () => ({ SecretString: value }));
  sm.on(PutSecretValueCommand, { SecretId: ID }).callsFake(async (input: { SecretString: string }) => {
    value = input.SecretString;
    return {};
  });
  return { value: () => value };
}

/** A node's mirror config as synth generates it (stacks/mirror-topology.ts), with its files under this test's folder. */
function nodeConfig(listen: string) {
  const d = mkdtempSync(join(root, 'node-'));
  const text = [
    'persistent_path: /var/lib/volley',
    `listen: ${listen}:7627`,
    'peer: 10.50.32.5:7627',
    `tls: { cert: ${join(d, 'mirror.crt')}, key: ${join(d, 'mirror.key')} }`,
    `peer_ca: ${join(d, 'mirror-ca.crt')}`,
    `secret_file: ${join(d, 'mirror.secret')}`,
  ].join('\n');
  const file = join(d, 'mirror.yaml');
  writeFileSync(file, text);
  return { file, config: parseMirrorConfig(text, file) };
}

/** Serves the fetched pair on 127.0.0.1; a client trusting only the fetched CA dials it by IP, as the peer's mirror does. */
async function peerAccepts(files: { certFile: string; keyFile: string; caFile: string }): Promise<boolean> {
  const server = createServer({ cert: readFileSync(files.certFile), key: readFileSync(files.keyFile) }, (s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    return await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, ca: readFileSync(files.caFile), rejectUnauthorized: true });
      socket.once('secureConnect', () => (resolve(socket.authorized), socket.destroy()));
      socket.once('error', () => resolve(false));
    });
  } finally {
    await new Promise((r) => server.close(r));
  }
}

beforeEach(() => sm.reset());

test('init adds a mirror CA once; fetch writes, where the node\'s config names them, the secret, the CA and a certificate for its listen IP that its peer accepts, all 0600', async () => {
  const s = store({ secret: SECRET });
  const first = await initMirrorSecret(client, ID, 'volley/staging/mirror');
  expect(first.changed).toEqual(['ca']);
  expect(JSON.parse(s.value())).toMatchObject({ secret: SECRET, ca_cert: expect.stringContaining('BEGIN CERTIFICATE') });
  expect(await initMirrorSecret(client, ID, 'volley/staging/mirror')).toEqual({ changed: [], caFingerprint: first.caFingerprint });

  const { file, config } = nodeConfig('127.0.0.1');
  const files = mirrorFiles(config, file);
  expect(files).toEqual({ secretFile: config.secretFile, caFile: config.peerCa, certFile: config.tls.cert, keyFile: config.tls.key, ip: '127.0.0.1' });
  expect(await fetchMirrorFiles(client, ID, files, me, () => undefined)).toBe('written');
  expect(readFileSync(files.secretFile, 'utf8')).toBe(SECRET);
  for (const f of [files.secretFile, files.caFile, files.certFile, files.keyFile]) expect(statSync(f).mode & 0o777).toBe(0o600);
  expect(await peerAccepts(files)).toBe(true);
});

test('before init, fetch fails with the mirror\'s code, naming the command to run, and writes nothing', async () => {
  store({ secret: SECRET });
  const { file, config } = nodeConfig('127.0.0.1');
  const files = mirrorFiles(config, file);
  const err = await fetchMirrorFiles(client, ID, files, me, () => undefined).catch((e: unknown) => e);
  expect(errorCode(err)).toBe('EMIRRORSECRET');
  expect((err as Error).message).toContain(`volley mirror-secret init --secret-id ${ID}`);
  expect(() => statSync(files.secretFile)).toThrow();
});

test('a config that listens on every address cannot be given a certificate its peer would check: refused', async () => {
  store({ secret: SECRET });
  await initMirrorSecret(client, ID, 'x');
  const { file, config } = nodeConfig('0.0.0.0');
  const err = await fetchMirrorFiles(client, ID, mirrorFiles(config, file), me, () => undefined).catch((e: unknown) => e);
  expect(errorCode(err)).toBe('EMIRRORSECRET');
  expect((err as Error).message).toContain('the mirror certificate is issued for the address its peers dial');
});

test('a config without peer_ca or secret_file has nowhere to put the fetched files: refused, naming them', () => {
  const config = parseMirrorConfig(['persistent_path: /p', 'listen: 10.0.0.1:7627', 'peer: 10.0.0.2:7627', 'tls: { cert: a.crt, key: a.key }', 'peer_fingerprint: "AB:CD"'].join('\n'), '/etc/volley/mirror.yaml');
  expect(() => mirrorFiles(config, '/etc/volley/mirror.yaml')).toThrow('has no secret_file and peer_ca');
});
