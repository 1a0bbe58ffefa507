// `volley secret-files fetch`: the operator's file secrets (mta.fileSecrets)
// written under the secrets directory root-owned 0640 for the daemon's group,
// in directories root owns, never through a link, stale files removed by the
// command's own manifest (never a file it did not write), paths that escape
// the directory refused naming the secret and the path but no value, and the
// files on disk kept when AWS cannot be reached. Secrets Manager is mocked
// (aws-sdk-client-mock); the files are real, in a temp dir.
import { GetSecretValueCommand, ResourceNotFoundException, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fetchSecretFiles, installSecretFiles, MANIFEST_NAME, parseFileSecret } from '../../../runtime/bootstrap/secret-files';

const client = new SecretsManagerClient({ region: 'eu-west-1' });
const sm = mockClient(client);
const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
/** The daemon's user as `--user volley` gives it: the files' group; their owner stays the fetch's own (root's) uid. */
const daemon = { uid: 4321, gid: 4322 };
const A = 'volley/dev/dkim-keys';
const B = 'volley/dev/webhooks';
const KEY = '-----BEGIN PRIVATE KEY-----\nsecret-key-bytes\n-----END PRIVATE KEY-----\n';

let dir: string;
let values: Map<string, string>;
beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), 'volley-secret-files-')), 'secrets');
  values = new Map();
  sm.reset();
  sm.on(GetSecretValueCommand).callsFake(async (input: { SecretId: string }) => {
    const value = values.get(input.SecretId);
    if (value === undefined) throw new ResourceNotFoundException({ message: 'Secrets Manager can\'t find the specified secret.', $metadata: { httpStatusCode: 400 } });
    return { SecretString: value };
  });
});
afterEach(() => rmSync(join(dir, '..'), { recursive: true, force: true }));

const put = (id: string, files: Record<string, string>): void => void values.set(id, JSON.stringify({ files }));
const fetch = (ids: string[], warn: (m: string) => void = () => undefined) => fetchSecretFiles(client, ids, { dir, owner: daemon, warn });

test('writes every file of every secret root:volley 0640 under the directory, reports the paths, and rewrites only what changed', async () => {
  put(A, { '/etc/volley/secrets/dkim/sender.example.pem': KEY });
  put(B, { '/etc/volley/secrets/webhook.secret': 'whsec_AAAA' });
  expect(await fetch([A, B])).toEqual({ result: 'written', change: { written: ['dkim/sender.example.pem', 'webhook.secret'], removed: [] } });
  expect(readFileSync(join(dir, 'dkim/sender.example.pem'), 'utf8')).toBe(KEY);
  expect(readFileSync(join(dir, 'webhook.secret'), 'utf8')).toBe('whsec_AAAA');
  // The MTA (User=volley) reads them through its group; only root writes or chmods them.
  for (const f of ['dkim/sender.example.pem', 'webhook.secret']) expect(statSync(join(dir, f))).toMatchObject({ mode: 0o100640, uid: me.uid, gid: daemon.gid });
  // The directories hold keys: root's, the daemon's group enters them, no one else.
  for (const d of ['', 'dkim']) expect(statSync(join(dir, d))).toMatchObject({ mode: 0o40750, uid: me.uid, gid: daemon.gid });
  expect(statSync(join(dir, MANIFEST_NAME))).toMatchObject({ mode: 0o100600, uid: me.uid, gid: daemon.gid });

  expect((await fetch([A, B])).change).toEqual({ written: [], removed: [] });
  // Same bytes, but someone else's or readable by others: rewritten for the daemon's user alone.
  chownSync(join(dir, 'webhook.secret'), 4321, 4321);
  chmodSync(join(dir, 'dkim/sender.example.pem'), 0o644);
  expect((await fetch([A, B])).change).toEqual({ written: ['dkim/sender.example.pem', 'webhook.secret'], removed: [] });
  expect(statSync(join(dir, 'webhook.secret'))).toMatchObject({ uid: me.uid, gid: daemon.gid });
  expect(statSync(join(dir, 'dkim/sender.example.pem')).mode & 0o777).toBe(0o640);
  put(B, { '/etc/volley/secrets/webhook.secret': 'whsec_BBBB' });
  expect((await fetch([A, B])).change).toEqual({ written: ['webhook.secret'], removed: [] });
  expect(readFileSync(join(dir, 'webhook.secret'), 'utf8')).toBe('whsec_BBBB');
});

test('a file no secret lists any more is removed; a file the command never wrote is left alone', async () => {
  put(A, { '/etc/volley/secrets/old.pem': KEY, '/etc/volley/secrets/kept.pem': KEY });
  await fetch([A]);
  writeFileSync(join(dir, 'by-hand.pem'), 'the operator put this here');
  put(A, { '/etc/volley/secrets/kept.pem': KEY });
  expect((await fetch([A])).change).toEqual({ written: [], removed: ['old.pem'] });
  expect(existsSync(join(dir, 'old.pem'))).toBe(false);
  expect(readFileSync(join(dir, 'by-hand.pem'), 'utf8')).toBe('the operator put this here');
  // A secret taken off the list (or the whole list emptied) takes its files with it; no AWS call is needed for that.
  expect((await fetch([])).change).toEqual({ written: [], removed: ['kept.pem'] });
  expect(readdirSync(dir).sort()).toEqual([MANIFEST_NAME, 'by-hand.pem']);
});

test.each([
  ['/etc/volley/secrets/../volley.yaml', /leaves the directory/],
  ['/etc/volley/secrets/dkim/../../proxy.secret', /leaves the directory/],
  ['/etc/volley/proxy.secret', /is not under \/etc\/volley\/secrets\//],
  ['/etc/volley/secrets/', /is not a normalised file path/],
  ['/etc/volley/secrets/./a.pem', /is not a normalised file path/],
  ['/etc/volley/secrets//a.pem', /is not a normalised file path/],
  [`/etc/volley/secrets/${MANIFEST_NAME}`, /outside \[A-Za-z0-9._-\] \(or starting with a dot\)/],
  ['/etc/volley/secrets/a b.pem', /outside/],
])('a path that leaves the directory or is not plain is refused before anything is written: %s', async (path, problem) => {
  put(A, { '/etc/volley/secrets/fine.pem': KEY, [path]: KEY });
  const err = (await fetch([A]).then(
    () => new Error('fetched'),
    (e: unknown) => e,
  )) as Error & { code?: string };
  expect(err).toMatchObject({ code: 'ESECRETFILES', message: expect.stringMatching(problem) });
  expect(err.message).toContain(`secret ${A}`);
  expect(err.message).toContain(JSON.stringify(path));
  expect(err.message).not.toContain('secret-key-bytes');
  expect(existsSync(join(dir, 'fine.pem'))).toBe(false);
});

test('a malformed secret is an error naming it (and the path), never its content', () => {
  expect(() => parseFileSecret('{"files": "-----BEGIN PRIVATE KEY-----"}', A)).toThrow(/secret volley\/dev\/dkim-keys: expected \{"files"/);
  expect(() => parseFileSecret('not json secret-key-bytes', A)).toThrow(/secret volley\/dev\/dkim-keys: not JSON/);
  expect(() => parseFileSecret('not json secret-key-bytes', A)).not.toThrow(/secret-key-bytes/);
  expect(() => parseFileSecret(JSON.stringify({ files: { '/etc/volley/secrets/a.pem': 42 } }), A)).toThrow(/file "\/etc\/volley\/secrets\/a\.pem" must be a non-empty string/);
});

test('a path in two secrets is refused: which one won would depend on the order of the list', async () => {
  put(A, { '/etc/volley/secrets/a.pem': KEY });
  put(B, { '/etc/volley/secrets/a.pem': 'other' });
  await expect(fetch([A, B])).rejects.toMatchObject({ message: `file /etc/volley/secrets/a.pem is in both secret ${A} and secret ${B}: keep each file in one secret` });
});

test('when AWS cannot be reached the files on disk are kept with a warning; without an earlier fetch, or with a file gone, the start fails', async () => {
  put(A, { '/etc/volley/secrets/a.pem': KEY });
  await fetch([A]);
  sm.reset();
  sm.on(GetSecretValueCommand).rejects(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:443'), { code: 'ECONNREFUSED', $metadata: { attempts: 3 } }));
  const warnings: string[] = [];
  expect(await fetch([A], (m) => warnings.push(m))).toEqual({ result: 'kept', change: { written: [], removed: [] } });
  expect(warnings).toEqual([expect.stringMatching(/ECONNREFUSED.*files already on disk/)]);
  expect(readFileSync(join(dir, 'a.pem'), 'utf8')).toBe(KEY);

  rmSync(join(dir, 'a.pem'));
  await expect(fetch([A])).rejects.toMatchObject({ message: expect.stringMatching(/cannot be used instead.*a\.pem is missing/) });
  rmSync(dir, { recursive: true });
  await expect(fetch([A])).rejects.toMatchObject({ message: expect.stringMatching(/cannot be used instead: no earlier fetch/) });
});

test('in a sync tick, an answer that refuses (no such secret) is an error and writes nothing', async () => {
  put(A, { '/etc/volley/secrets/a.pem': KEY });
  await expect(fetch([A, B])).rejects.toMatchObject({ message: expect.stringContaining(`cannot read secret ${B}`) });
  expect(existsSync(join(dir, 'a.pem'))).toBe(false);
});

describe('before a start, any failure keeps the whole files on disk, loudly: a secret the operator broke never stops the MTA', () => {
  const atStart = (ids: string[], warn: (m: string) => void = () => undefined) => fetchSecretFiles(client, ids, { dir, owner: daemon, warn, atStart: true });
  const rejectWith = (err: Error): void => {
    sm.reset();
    sm.on(GetSecretValueCommand).rejects(err);
  };
  const metadata = { $metadata: { httpStatusCode: 400 } };

  test.each([
    ['the secret deleted', () => rejectWith(new ResourceNotFoundException({ message: "Secrets Manager can't find the specified secret.", ...metadata })), /cannot read secret volley\/dev\/dkim-keys: Secrets Manager can't find/],
    ['access denied', () => rejectWith(Object.assign(new Error('User: arn:aws:sts::1:assumed-role/mta is not authorized'), { name: 'AccessDeniedException', ...metadata })), /cannot read secret volley\/dev\/dkim-keys: User: .* is not authorized/],
    ['the KMS key disabled', () => rejectWith(Object.assign(new Error('Access to KMS is not allowed'), { name: 'DecryptionFailure', ...metadata })), /Access to KMS is not allowed/],
    ['a malformed value', () => void values.set(A, '{"files": ["secret-key-bytes"]}'), /secret volley\/dev\/dkim-keys: expected \{"files"/],
  ])('%s: exit 0 with the files the last fetch wrote, and a warning naming the secret and the error', async (_what, breakIt, error) => {
    put(A, { '/etc/volley/secrets/dkim/a.pem': KEY });
    await atStart([A]);
    breakIt();
    const warnings: string[] = [];
    expect(await atStart([A], (m) => warnings.push(m))).toEqual({ result: 'kept', change: { written: [], removed: [] } });
    expect(warnings).toEqual([expect.stringMatching(error)]);
    expect(warnings[0]).toContain(`(secrets: ${A}); starting with the files already on disk`);
    expect(warnings[0]).not.toContain('secret-key-bytes');
    expect(readFileSync(join(dir, 'dkim/a.pem'), 'utf8')).toBe(KEY);
  });

  test('a first boot with no files on disk still fails, saying why and that there is nothing to fall back on', async () => {
    await expect(atStart([A])).rejects.toMatchObject({
      code: 'ESECRETFILES',
      message: expect.stringMatching(/cannot read secret volley\/dev\/dkim-keys: .*; the files on disk cannot be used instead: no earlier fetch/),
    });
    put(A, { '/etc/volley/secrets/dkim/a.pem': KEY });
    await atStart([A]);
    rmSync(join(dir, 'dkim/a.pem'));
    values.clear();
    await expect(atStart([A])).rejects.toMatchObject({ message: expect.stringMatching(/the files on disk cannot be used instead: .*dkim\/a\.pem is missing/) });
  });

  test('a directory made a link is no fallback either: the start fails rather than read through it', async () => {
    put(A, { '/etc/volley/secrets/dkim/a.pem': KEY });
    await atStart([A]);
    const outside = join(dir, '..', 'elsewhere');
    mkdirSync(outside);
    writeFileSync(join(outside, 'a.pem'), KEY);
    rmSync(join(dir, 'dkim'), { recursive: true });
    symlinkSync(outside, join(dir, 'dkim'));
    await expect(atStart([A])).rejects.toMatchObject({ message: expect.stringMatching(/is a link, not a directory: refusing to write.*; the files on disk cannot be used instead: .*is a link, not a directory: refusing to read/) });
  });
});

describe('the daemon\'s user cannot make the root fetch write, chown or delete outside the directory', () => {
  let outside: string;
  beforeEach(() => {
    outside = join(dir, '..', 'outside');
    mkdirSync(outside, { mode: 0o755 });
  });
  const refused = (p: Promise<unknown>): Promise<unknown> => p.then(() => new Error('no refusal'), (e: unknown) => e);

  test('a directory of a listed path that is a link is refused, not followed: nothing written or chowned there', async () => {
    mkdirSync(dir);
    symlinkSync(outside, join(dir, 'dkim'));
    put(A, { '/etc/volley/secrets/dkim/example.com.pem': KEY });
    expect(await refused(fetch([A]))).toMatchObject({ code: 'ESECRETFILES', message: expect.stringContaining(`${join(dir, 'dkim')} is a link, not a directory: refusing to write`) });
    expect(lstatSync(join(dir, 'dkim')).isSymbolicLink()).toBe(true);
    expect(readdirSync(outside)).toEqual([]);
    expect(statSync(outside)).toMatchObject({ uid: me.uid, gid: me.gid, mode: 0o40755 });
  });

  test('a directory root made by hand (root:root 0700) is given to the daemon\'s group to read, 0750', async () => {
    mkdirSync(join(dir, 'dkim'), { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    put(A, { '/etc/volley/secrets/dkim/example.com.pem': KEY });
    await fetch([A]);
    for (const d of ['', 'dkim']) expect(statSync(join(dir, d))).toMatchObject({ mode: 0o40750, uid: me.uid, gid: daemon.gid });
  });

  test('a directory someone else owns is refused (its owner could swap it for a link between two fetches)', async () => {
    mkdirSync(join(dir, 'dkim'), { recursive: true });
    chownSync(join(dir, 'dkim'), daemon.uid, daemon.gid);
    put(A, { '/etc/volley/secrets/dkim/example.com.pem': KEY });
    expect(await refused(fetch([A]))).toMatchObject({ message: expect.stringContaining(`${join(dir, 'dkim')} is owned by uid ${daemon.uid}`) });
    expect(existsSync(join(dir, 'dkim/example.com.pem'))).toBe(false);
  });

  test('a stale file under a directory now a link is not removed through it', async () => {
    await installSecretFiles(new Map([['webhook/hooks.secret', 's1']]), { dir, owner: daemon });
    rmSync(join(dir, 'webhook'), { recursive: true });
    symlinkSync(outside, join(dir, 'webhook'));
    writeFileSync(join(outside, 'hooks.secret'), 'not ours');
    expect(await refused(installSecretFiles(new Map(), { dir, owner: daemon }))).toMatchObject({ message: expect.stringContaining('is a link, not a directory: refusing to remove') });
    expect(readFileSync(join(outside, 'hooks.secret'), 'utf8')).toBe('not ours');
  });

  test('a listed file that is a link is replaced by the file, never written through', async () => {
    mkdirSync(dir);
    writeFileSync(join(outside, 'target'), 'not ours');
    symlinkSync(join(outside, 'target'), join(dir, 'a.pem'));
    put(A, { '/etc/volley/secrets/a.pem': KEY });
    expect((await fetch([A])).change.written).toEqual(['a.pem']);
    expect(lstatSync(join(dir, 'a.pem')).isFile()).toBe(true);
    expect(readFileSync(join(outside, 'target'), 'utf8')).toBe('not ours');
  });

  test('a manifest someone else owns (or wrote group-writable) is not believed: nothing is deleted by it', async () => {
    mkdirSync(dir);
    writeFileSync(join(dir, 'victim.pem'), 'not listed by any secret');
    writeFileSync(join(dir, MANIFEST_NAME), JSON.stringify({ files: ['victim.pem'] }), { mode: 0o600 });
    chownSync(join(dir, MANIFEST_NAME), daemon.uid, daemon.gid);
    expect(await refused(fetch([]))).toMatchObject({ code: 'ESECRETFILES', message: expect.stringContaining('is not owned by uid') });
    chownSync(join(dir, MANIFEST_NAME), me.uid, me.gid);
    chmodSync(join(dir, MANIFEST_NAME), 0o620);
    expect(await refused(fetch([]))).toMatchObject({ message: expect.stringContaining('is not owned by uid') });
    expect(existsSync(join(dir, 'victim.pem'))).toBe(true);
  });
});

describe('a path that turns from a file into a directory, or back, never wedges the fetch', () => {
  const manifest = (): string[] => (JSON.parse(readFileSync(join(dir, MANIFEST_NAME), 'utf8')) as { files: string[] }).files;

  test('a set of paths where one is a directory of another is refused naming both, before anything is written', async () => {
    put(A, { '/etc/volley/secrets/webhook': 'whsec_A', '/etc/volley/secrets/a.pem': KEY });
    put(B, { '/etc/volley/secrets/webhook/hooks.secret': 'whsec_B' });
    await expect(fetch([A, B])).rejects.toMatchObject({
      code: 'ESECRETFILES',
      message: `file /etc/volley/secrets/webhook (secret ${A}) would be a directory of /etc/volley/secrets/webhook/hooks.secret (secret ${B}): a path is a file or a directory, not both`,
    });
    expect(existsSync(join(dir, 'a.pem'))).toBe(false);
    await expect(installSecretFiles(new Map([['d/e', 'x'], ['d/e/f', 'y']]), { dir, owner: daemon })).rejects.toThrow('would be a directory of /etc/volley/secrets/d/e/f');
  });

  test('a directory of files that becomes one file, and back: each fetch succeeds, and the manifest lists what is on disk', async () => {
    put(A, { '/etc/volley/secrets/webhook/hooks.secret': 'whsec_1' });
    await fetch([A]);
    put(A, { '/etc/volley/secrets/webhook': 'whsec_2' });
    expect((await fetch([A])).change).toEqual({ written: ['webhook'], removed: ['webhook/hooks.secret'] });
    expect(readFileSync(join(dir, 'webhook'), 'utf8')).toBe('whsec_2');
    expect(manifest()).toEqual(['webhook']);
    put(A, { '/etc/volley/secrets/webhook/hooks.secret': 'whsec_1' });
    expect((await fetch([A])).change).toEqual({ written: ['webhook/hooks.secret'], removed: ['webhook'] });
    expect(readFileSync(join(dir, 'webhook/hooks.secret'), 'utf8')).toBe('whsec_1');
    expect(manifest()).toEqual(['webhook/hooks.secret']);
  });

  test('a manifest entry that is now a directory of listed files, or already gone, is dropped without an error (nor a report of a removal)', async () => {
    // What an interrupted or failed earlier run could leave: entries that are no longer files.
    put(A, { '/etc/volley/secrets/webhook/hooks.secret': 'whsec_1' });
    await fetch([A]);
    writeFileSync(join(dir, MANIFEST_NAME), JSON.stringify({ files: ['gone.pem', 'webhook', 'webhook/hooks.secret'] }), { mode: 0o600 });
    expect((await fetch([A])).change).toEqual({ written: [], removed: [] });
    expect(readFileSync(join(dir, 'webhook/hooks.secret'), 'utf8')).toBe('whsec_1');
    expect(manifest()).toEqual(['webhook/hooks.secret']);
  });

  test('a file that cannot be written (a directory of files put by hand is there) fails clearly and is not added to the manifest', async () => {
    put(A, { '/etc/volley/secrets/a.pem': KEY });
    await fetch([A]);
    mkdirSync(join(dir, 'tls'), { mode: 0o750 });
    writeFileSync(join(dir, 'tls/by-hand.crt'), 'the operator put this here');
    put(A, { '/etc/volley/secrets/a.pem': KEY, '/etc/volley/secrets/tls': 'pair' });
    await expect(fetch([A])).rejects.toMatchObject({ code: 'ESECRETFILES', message: `${join(dir, 'tls')} is a directory this command did not fill: remove it by hand to write the file there` });
    expect(manifest()).toEqual(['a.pem']);
    expect(readFileSync(join(dir, 'tls/by-hand.crt'), 'utf8')).toBe('the operator put this here');
    // The operator fixes the secret: the next fetch goes on as if nothing had happened.
    put(A, { '/etc/volley/secrets/a.pem': KEY });
    expect((await fetch([A])).change).toEqual({ written: [], removed: [] });
  });
});
