// The drain's secrets on an MTA instance: `volley drain-secret init` adds the
// drain CA to the environment's volley/<env>/drain secret once; `fetch`
// writes the HMAC secret (and the previous one during a rotation), the CA,
// and a certificate for the instance's IP, 0600, or keeps the files on disk
// when AWS cannot be reached. Secrets Manager is mocked (aws-sdk-client-mock),
// as in proxy-link.test.ts; the certificate is checked by a real TLS
// handshake on 127.0.0.1, the way `volley drain --ca-file` checks a destination.
import { GetSecretValueCommand, PutSecretValueCommand, ResourceNotFoundException, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer } from 'node:tls';
import { fetchDrainFiles, formatDrainSecret, initDrainSecret, parseDrainSecret, type DrainFiles } from '../../../runtime/bootstrap/drain-secret';

const ID = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:volley/dev/drain-AbCdEf';
const client = new SecretsManagerClient({ region: 'eu-west-1' });
const sm = mockClient(client);
const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
const SECRET = 'D'.repeat(64);
const OLD = 'O'.repeat(64);

let dir: string;
let files: DrainFiles;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'volley-drain-secret-'));
  files = { secretFile: join(dir, 'drain.secret'), caFile: join(dir, 'drain-ca.crt'), certFile: join(dir, 'drain.crt'), keyFile: join(dir, 'drain.key'), ip: '127.0.0.1' };
  sm.reset();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The secret as Secrets Manager keeps it; value() is what it holds now. */
function store(initial: object): { value: () => string } {
  let value = JSON.stringify(initial);
  sm.on(GetSecretValueCommand, { SecretId: ID }).callsFake(async () => ({ SecretString: value }));
  sm.on(PutSecretValueCommand, { SecretId: ID }).callsFake(async (input: { SecretString: string }) => {
    value = input.SecretString;
    return {};
  });
  return { value: () => value };
}

/** A TLS server with the fetched pair on 127.0.0.1, and a client trusting only the fetched CA: does the handshake verify? */
async function verifies(caFile: string): Promise<boolean> {
  const server = createServer({ cert: readFileSync(files.certFile), key: readFileSync(files.keyFile) }, (s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    return await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, ca: readFileSync(caFile), rejectUnauthorized: true });
      socket.once('secureConnect', () => (resolve(socket.authorized), socket.destroy()));
      socket.once('error', () => resolve(false));
    });
  } finally {
    await new Promise((r) => server.close(r));
  }
}

test('init adds a CA once, keeping the generated secret; fetch writes the secret, the CA and a certificate for the IP that verifies against it, all 0600', async () => {
  const s = store({ secret: SECRET });
  const first = await initDrainSecret(client, ID, 'dev');
  expect(first.changed).toEqual(['ca']);
  expect(parseDrainSecret(s.value(), ID)).toMatchObject({ secret: SECRET, caCert: expect.stringContaining('BEGIN CERTIFICATE') });
  // Again: unchanged, the same CA.
  expect(await initDrainSecret(client, ID, 'dev')).toEqual({ changed: [], caFingerprint: first.caFingerprint });

  expect(await fetchDrainFiles(client, ID, files, me, () => undefined)).toBe('written');
  expect(readFileSync(files.secretFile, 'utf8')).toBe(SECRET);
  for (const f of [files.secretFile, files.caFile, files.certFile, files.keyFile]) expect(statSync(f).mode & 0o777).toBe(0o600);
  expect(existsSync(`${files.secretFile}.previous`)).toBe(false);
  expect(await verifies(files.caFile)).toBe(true);
  // Another environment's CA does not vouch for it.
  const other = mkdtempSync(join(tmpdir(), 'volley-drain-other-'));
  try {
    const otherFiles = { ...files, secretFile: join(other, 's'), caFile: join(other, 'ca'), certFile: join(other, 'c'), keyFile: join(other, 'k') };
    sm.reset();
    store({ secret: SECRET });
    await initDrainSecret(client, ID, 'other');
    await fetchDrainFiles(client, ID, otherFiles, me, () => undefined);
    expect(await verifies(otherFiles.caFile)).toBe(false);
  } finally {
    rmSync(other, { recursive: true, force: true });
  }
});

test('before init the fetch fails naming the command, and writes nothing', async () => {
  store({ secret: SECRET });
  await expect(fetchDrainFiles(client, ID, files, me, () => undefined)).rejects.toMatchObject({ code: 'EDRAINSECRET', message: expect.stringContaining('volley drain-secret init') });
  expect(existsSync(files.secretFile)).toBe(false);
});

test('during a rotation the previous secret is written beside it, and removed once the rotation is over', async () => {
  const s = store({ secret: SECRET, previous_secret: OLD });
  await initDrainSecret(client, ID, 'dev');
  await fetchDrainFiles(client, ID, files, me, () => undefined);
  expect(readFileSync(`${files.secretFile}.previous`, 'utf8')).toBe(OLD);
  const held = parseDrainSecret(s.value(), ID);
  sm.reset();
  store(JSON.parse(formatDrainSecret({ ...held, previousSecret: undefined })) as object);
  await fetchDrainFiles(client, ID, files, me, () => undefined);
  expect(existsSync(`${files.secretFile}.previous`)).toBe(false);
  expect(readFileSync(files.secretFile, 'utf8')).toBe(SECRET);
});

test('a bad secret fails with EDRAINSECRET, never showing a value, and leaves the files as they were', async () => {
  writeFileSync(files.secretFile, SECRET);
  store({ secret: 'short-and-secret' });
  const failure = fetchDrainFiles(client, ID, files, me, () => undefined);
  await expect(failure).rejects.toMatchObject({ code: 'EDRAINSECRET', message: expect.stringContaining('at least 32 bytes') });
  await expect(failure).rejects.not.toMatchObject({ message: expect.stringContaining('short-and-secret') });
  expect(readFileSync(files.secretFile, 'utf8')).toBe(SECRET);
  expect(() => parseDrainSecret('nope', ID)).toThrow('not JSON');
  expect(() => parseDrainSecret(JSON.stringify({ secret: SECRET, previous_secret: 7 }), ID)).toThrow('"previous_secret" must be a string');
  expect(() => parseDrainSecret(JSON.stringify({ secret: SECRET, ca_cert: '-----BEGIN CERTIFICATE-----' }), ID)).toThrow('ca_cert and ca_key go together');
  sm.reset();
  store({ secret: SECRET });
  await initDrainSecret(client, ID, 'dev');
  await expect(fetchDrainFiles(client, ID, { ...files, ip: '0.0.0.0' }, me, () => undefined)).rejects.toMatchObject({ code: 'EDRAINSECRET', message: expect.stringContaining('not this instance\'s IP') });
});

test('when AWS cannot be reached whole files on disk are kept, with a warning; without usable ones the start fails', async () => {
  store({ secret: SECRET });
  await initDrainSecret(client, ID, 'dev');
  await fetchDrainFiles(client, ID, files, me, () => undefined);
  const before = readFileSync(files.certFile, 'utf8');
  sm.reset();
  sm.on(GetSecretValueCommand).rejects(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:443'), { code: 'ECONNREFUSED', $metadata: { attempts: 3 } }));
  const warnings: string[] = [];
  expect(await fetchDrainFiles(client, ID, files, me, (m) => warnings.push(m))).toBe('kept');
  expect(warnings).toEqual([expect.stringMatching(/ECONNREFUSED.*files already on disk.*drain\.secret/)]);
  expect(readFileSync(files.certFile, 'utf8')).toBe(before);
  writeFileSync(files.secretFile, 'short');
  await expect(fetchDrainFiles(client, ID, files, me, () => undefined)).rejects.toMatchObject({ message: expect.stringMatching(/cannot be used instead.*less than 32 bytes/) });
});

test('an answer that refuses (no such secret) stops the start even with files on disk', async () => {
  writeFileSync(files.secretFile, SECRET);
  sm.on(GetSecretValueCommand).rejects(new ResourceNotFoundException({ message: 'Secrets Manager can\'t find the specified secret.', $metadata: { httpStatusCode: 400 } }));
  await expect(fetchDrainFiles(client, ID, files, me, () => undefined)).rejects.toMatchObject({ message: expect.stringContaining('can\'t find') });
});
