// The drain secret on an MTA instance: `volley drain-secret fetch` writes the
// environment's volley/<env>/drain secret to drain.secret_file (and the
// previous secret beside it during a rotation), 0600, or keeps the file on
// disk when AWS cannot be reached. Secrets Manager is mocked
// (aws-sdk-client-mock), as in proxy-link.test.ts.
import { GetSecretValueCommand, ResourceNotFoundException, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fetchDrainSecret, parseDrainSecret } from '../../../runtime/bootstrap/drain-secret';

const ID = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:volley/dev/drain-AbCdEf';
const client = new SecretsManagerClient({ region: 'eu-west-1' });
const sm = mockClient(client);
const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
const SECRET = 'D'.repeat(64);
const OLD = 'O'.repeat(64);

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'volley-drain-secret-'));
  file = join(dir, 'drain.secret');
  sm.reset();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const holds = (value: object): void => void sm.on(GetSecretValueCommand, { SecretId: ID }).resolves({ SecretString: JSON.stringify(value) });

test('writes what CloudFormation generated to the file, 0600, and nothing beside it', async () => {
  holds({ secret: SECRET });
  expect(await fetchDrainSecret(client, ID, file, me, () => undefined)).toBe('written');
  expect(readFileSync(file, 'utf8')).toBe(SECRET);
  expect(statSync(file).mode & 0o777).toBe(0o600);
  expect(existsSync(`${file}.previous`)).toBe(false);
});

test('during a rotation the previous secret is written beside it, and removed once the rotation is over', async () => {
  holds({ secret: SECRET, previous_secret: OLD });
  await fetchDrainSecret(client, ID, file, me, () => undefined);
  expect(readFileSync(`${file}.previous`, 'utf8')).toBe(OLD);
  sm.reset();
  holds({ secret: SECRET });
  await fetchDrainSecret(client, ID, file, me, () => undefined);
  expect(existsSync(`${file}.previous`)).toBe(false);
  expect(readFileSync(file, 'utf8')).toBe(SECRET);
});

test('a bad secret fails with EDRAINSECRET, never showing a value, and leaves the file as it was', async () => {
  writeFileSync(file, SECRET);
  holds({ secret: 'short-and-secret' });
  await expect(fetchDrainSecret(client, ID, file, me, () => undefined)).rejects.toMatchObject({ code: 'EDRAINSECRET', message: expect.stringContaining('at least 32 bytes') });
  await expect(fetchDrainSecret(client, ID, file, me, () => undefined)).rejects.not.toMatchObject({ message: expect.stringContaining('short-and-secret') });
  expect(readFileSync(file, 'utf8')).toBe(SECRET);
  expect(() => parseDrainSecret('nope', ID)).toThrow('not JSON');
  expect(() => parseDrainSecret(JSON.stringify({ secret: SECRET, previous_secret: 7 }), ID)).toThrow('"previous_secret" must be a string');
});

test('when AWS cannot be reached the file on disk is kept, with a warning; without a usable one the start fails', async () => {
  writeFileSync(file, SECRET);
  sm.on(GetSecretValueCommand).rejects(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:443'), { code: 'ECONNREFUSED', $metadata: { attempts: 3 } }));
  const warnings: string[] = [];
  expect(await fetchDrainSecret(client, ID, file, me, (m) => warnings.push(m))).toBe('kept');
  expect(warnings).toEqual([expect.stringMatching(/ECONNREFUSED.*files already on disk.*drain\.secret/)]);
  expect(readFileSync(file, 'utf8')).toBe(SECRET);
  writeFileSync(file, 'short');
  await expect(fetchDrainSecret(client, ID, file, me, () => undefined)).rejects.toMatchObject({ message: expect.stringMatching(/cannot be used instead.*less than 32 bytes/) });
});

test('an answer that refuses (no such secret) stops the start even with a file on disk', async () => {
  writeFileSync(file, SECRET);
  sm.on(GetSecretValueCommand).rejects(new ResourceNotFoundException({ message: 'Secrets Manager can\'t find the specified secret.', $metadata: { httpStatusCode: 400 } }));
  await expect(fetchDrainSecret(client, ID, file, me, () => undefined)).rejects.toMatchObject({ message: expect.stringContaining('can\'t find') });
});
