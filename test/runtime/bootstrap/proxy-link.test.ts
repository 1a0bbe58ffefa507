// The proxy-link secrets on an instance: what `volley proxy-link init` puts in
// Secrets Manager (the link secret every slot reads, the CA key secret only
// proxies read) and what `fetch` writes from them, or keeps when AWS cannot
// be reached. Secrets Manager is mocked (aws-sdk-client-mock); the
// certificates are checked by a real TLS handshake on 127.0.0.1, the way an
// MTA checks a proxy.
import { GetSecretValueCommand, PutSecretValueCommand, ResourceNotFoundException, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { connect, createServer, type TLSSocket } from 'node:tls';
import {
  fetchMtaLinkFiles,
  fetchProxyLinkFiles,
  formatProxyLinkSecret,
  initProxyLinkSecret,
  installMtaLinkFiles,
  installProxyLinkFiles,
  issuingCa,
  newProxyCa,
  parseProxyCaSecret,
  parseProxyLinkSecret,
  readProxyCaSecret,
  readProxyLinkSecret,
  secretsManagerClient,
  type ProxyLinkSecret,
} from '../../../runtime/bootstrap/proxy-link';

const ID = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:volley/dev/proxy-link-AbCdEf';
const CA_ID = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:volley/dev/proxy-ca-key-GhIjKl';
const IDS = { secretId: ID, caSecretId: CA_ID };
// What CloudFormation's generateSecretString leaves in the secrets before init.
const GENERATED = JSON.stringify({ secret: 'Q'.repeat(64) });
const GENERATED_CA = JSON.stringify({ placeholder: 'x'.repeat(16) });

const client = new SecretsManagerClient({ region: 'eu-west-1' });
// This client only: the timeout test below talks to a real (silent) endpoint with another one.
const sm = mockClient(client);
const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

/** The environment's two secrets, as Secrets Manager keeps them; value() is the link secret's, caValue() the CA key secret's. */
function store(initial: string, initialCa = GENERATED_CA): { value: () => string; caValue: () => string } {
  const values = new Map([
    [ID, initial],
    [CA_ID, initialCa],
  ]);
  sm.reset();
  for (const id of [ID, CA_ID]) {
    sm.on(GetSecretValueCommand, { SecretId: id }).callsFake(async () => ({ SecretString: values.get(id) }));
    sm.on(PutSecretValueCommand, { SecretId: id }).callsFake(async (input: { SecretString: string }) => {
      values.set(id, input.SecretString);
      return {};
    });
  }
  return { value: () => values.get(ID) as string, caValue: () => values.get(CA_ID) as string };
}

/** What a proxy issues from, as `fetch proxy` finds it. */
async function caOf(s: ProxyLinkSecret): Promise<{ cert: string; key: string }> {
  return issuingCa(s, await readProxyCaSecret(client, CA_ID), IDS).ca;
}

/** Does a client trusting `caFile` accept a server with this pair, dialled at 127.0.0.1? */
async function handshake(pair: { cert: string; key: string }, ca: string): Promise<boolean> {
  const server = createServer({ cert: pair.cert, key: pair.key }, (s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  try {
    return await new Promise<boolean>((resolve) => {
      // As the MTA dials a proxy: by IP, no servername, the CA as the only trust anchor.
      const socket: TLSSocket = connect({ host: '127.0.0.1', port, ca, rejectUnauthorized: true });
      socket.once('secureConnect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
  } finally {
    await new Promise((r) => server.close(r));
  }
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'volley-link-'));
}

async function proxyFiles(s: ProxyLinkSecret, ip = '127.0.0.1'): Promise<{ dir: string; cert: string; key: string }> {
  const dir = tempDir();
  const files = { secretFile: join(dir, 'proxy.secret'), certFile: join(dir, 'proxy.crt'), keyFile: join(dir, 'proxy.key'), name: 'proxy-a1', ip };
  await installProxyLinkFiles(s, await caOf(s), files, me);
  return { dir, cert: readFileSync(files.certFile, 'utf8'), key: readFileSync(files.keyFile, 'utf8') };
}

async function mtaBundle(s: ProxyLinkSecret): Promise<{ dir: string; ca: string }> {
  const dir = tempDir();
  await installMtaLinkFiles(s, ID, { secretFile: join(dir, 'proxy.secret'), caFiles: [join(dir, 'proxy-ca.crt'), join(dir, 'proxy-ca.crt')] }, me);
  return { dir, ca: readFileSync(join(dir, 'proxy-ca.crt'), 'utf8') };
}

test('init adds a CA, its key only to the CA key secret: the link secret every MTA reads holds no private key', async () => {
  const secret = store(GENERATED);
  const result = await initProxyLinkSecret(client, IDS, { label: 'dev' });
  const stored = parseProxyLinkSecret(secret.value(), ID);
  expect(stored.secret).toBe('Q'.repeat(64));
  expect(stored.caCert).toContain('BEGIN CERTIFICATE');
  expect(secret.value()).not.toContain('PRIVATE KEY');
  expect(Object.keys(JSON.parse(secret.value()) as object).sort()).toEqual(['ca_cert', 'secret']);
  expect(parseProxyCaSecret(secret.caValue(), CA_ID)).toEqual({ cert: stored.caCert, key: expect.stringContaining('PRIVATE KEY') });
  expect(result.changed).toEqual(['ca']);
  expect(JSON.stringify(result)).not.toContain('PRIVATE KEY');
  expect(JSON.stringify(result)).not.toContain('Q'.repeat(64));

  // A second init changes nothing (and writes nothing).
  sm.resetHistory();
  expect((await initProxyLinkSecret(client, IDS, { label: 'dev' })).changed).toEqual([]);
  expect(sm.commandCalls(PutSecretValueCommand)).toHaveLength(0);
});

test('a proxy and an MTA fetched from the same secret complete a verified TLS handshake, with the files 0600 for the daemon user', async () => {
  const secret = store(GENERATED);
  await initProxyLinkSecret(client, IDS, { label: 'dev' });
  const s = await readProxyLinkSecret(client, ID);
  const proxy = await proxyFiles(s);
  const mta = await mtaBundle(s);
  expect(await handshake(proxy, mta.ca)).toBe(true);
  for (const dir of [proxy.dir, mta.dir]) {
    expect(readFileSync(join(dir, 'proxy.secret'), 'utf8')).toBe(parseProxyLinkSecret(secret.value(), ID).secret);
    for (const name of readdirSync(dir)) {
      const st = statSync(join(dir, name));
      expect({ name, mode: st.mode & 0o777, uid: st.uid, gid: st.gid }).toEqual({ name, mode: 0o600, uid: me.uid, gid: me.gid });
    }
  }
  // The certificate names the proxy's listen address: a proxy certificate for another IP is refused.
  const elsewhere = await proxyFiles(s, '10.40.0.10');
  expect(await handshake(elsewhere, mta.ca)).toBe(false);
});

test('a CA rotation keeps proxies on the old CA reachable until the previous CA is dropped', async () => {
  store(GENERATED);
  await initProxyLinkSecret(client, IDS, { label: 'dev' });
  const oldProxy = await proxyFiles(await readProxyLinkSecret(client, ID));

  const rotated = await initProxyLinkSecret(client, IDS, { label: 'dev', rotateCa: true });
  expect(rotated.changed).toEqual(['ca (previous kept as previous_ca_cert)']);
  const during = await readProxyLinkSecret(client, ID);
  const newProxy = await proxyFiles(during);
  const mtaDuring = await mtaBundle(during);
  expect(await handshake(oldProxy, mtaDuring.ca)).toBe(true);
  expect(await handshake(newProxy, mtaDuring.ca)).toBe(true);

  await initProxyLinkSecret(client, IDS, { label: 'dev', dropPreviousCa: true });
  const mtaAfter = await mtaBundle(await readProxyLinkSecret(client, ID));
  expect(await handshake(newProxy, mtaAfter.ca)).toBe(true);
  expect(await handshake(oldProxy, mtaAfter.ca)).toBe(false);
});

test('--rotate-secret makes a new shared secret of 64 hex characters and keeps the old one for proxies until it is dropped', async () => {
  const secret = store(GENERATED);
  await initProxyLinkSecret(client, IDS, { label: 'dev' });
  await initProxyLinkSecret(client, IDS, { label: 'dev', rotateSecret: true });
  const during = parseProxyLinkSecret(secret.value(), ID);
  expect(during.secret).toMatch(/^[0-9a-f]{64}$/);
  expect(during.previousSecret).toBe('Q'.repeat(64));
  // A proxy gets both (the previous one where its previous_secret_file defaults to); an MTA only the new one.
  const proxy = await proxyFiles(during);
  expect(readFileSync(join(proxy.dir, 'proxy.secret'), 'utf8')).toBe(during.secret);
  expect(readFileSync(join(proxy.dir, 'proxy.secret.previous'), 'utf8')).toBe('Q'.repeat(64));
  const mta = await mtaBundle(during);
  expect(readdirSync(mta.dir).sort()).toEqual(['proxy-ca.crt', 'proxy.secret']);

  await expect(initProxyLinkSecret(client, IDS, { label: 'dev', rotateSecret: true, dropPreviousSecret: true })).rejects.toMatchObject({ code: 'EPROXYLINK' });
  expect((await initProxyLinkSecret(client, IDS, { label: 'dev', dropPreviousSecret: true })).changed).toEqual(['previous_secret dropped']);
  const after = parseProxyLinkSecret(secret.value(), ID);
  expect(after).toMatchObject({ secret: during.secret, previousSecret: undefined });
  // The next fetch on that proxy removes the previous secret's file.
  await installProxyLinkFiles(after, await caOf(after), { secretFile: join(proxy.dir, 'proxy.secret'), certFile: join(proxy.dir, 'proxy.crt'), keyFile: join(proxy.dir, 'proxy.key'), name: 'proxy-a1', ip: '127.0.0.1' }, me);
  expect(existsSync(join(proxy.dir, 'proxy.secret.previous'))).toBe(false);
});

test('init moves a CA key kept in the link secret (before it had its own) to the CA key secret, keeping the same CA', async () => {
  const legacyCa = await newProxyCa('dev');
  const secret = store(JSON.stringify({ secret: 'Q'.repeat(64), ca_cert: legacyCa.cert, ca_key: legacyCa.key }));
  // Until then a proxy still starts from the old place, warning.
  const before = await readProxyLinkSecret(client, ID);
  const warnings: string[] = [];
  const dir = tempDir();
  const files = { secretFile: join(dir, 'proxy.secret'), certFile: join(dir, 'proxy.crt'), keyFile: join(dir, 'proxy.key'), name: 'proxy-a1', ip: '127.0.0.1' };
  expect(await fetchProxyLinkFiles(client, IDS, files, me, (m) => warnings.push(m))).toBe('written');
  expect(warnings).toEqual([expect.stringContaining('volley proxy-link init')]);
  expect(before.caCert).toBe(legacyCa.cert);

  const result = await initProxyLinkSecret(client, IDS, { label: 'dev' });
  expect(result.changed).toEqual([`ca_key moved to ${CA_ID}`]);
  expect(secret.value()).not.toContain('PRIVATE KEY');
  expect(parseProxyLinkSecret(secret.value(), ID)).toMatchObject({ caCert: legacyCa.cert, previousCaCert: undefined });
  expect(parseProxyCaSecret(secret.caValue(), CA_ID)).toEqual(legacyCa);
  // The certificate issued before the move still verifies against what MTAs get after it.
  const mta = await mtaBundle(await readProxyLinkSecret(client, ID));
  expect(await handshake({ cert: readFileSync(files.certFile, 'utf8'), key: readFileSync(files.keyFile, 'utf8') }, mta.ca)).toBe(true);
});

test('a CA key secret holding a CA the MTAs do not trust stops a proxy\'s fetch, naming init', async () => {
  const secret = store(GENERATED);
  await initProxyLinkSecret(client, IDS, { label: 'dev' });
  const stranger = await newProxyCa('elsewhere');
  store(secret.value(), JSON.stringify({ ca_cert: stranger.cert, ca_key: stranger.key }));
  const dir = tempDir();
  const files = { secretFile: join(dir, 'proxy.secret'), certFile: join(dir, 'proxy.crt'), keyFile: join(dir, 'proxy.key'), name: 'proxy-a1', ip: '127.0.0.1' };
  await expect(fetchProxyLinkFiles(client, IDS, files, me, () => undefined)).rejects.toMatchObject({ code: 'EPROXYLINK', message: expect.stringContaining('do not trust') });
  expect(readdirSync(dir)).toEqual([]);
});

describe('fetch when Secrets Manager cannot be reached', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  /** Every GetSecretValue fails as the SDK fails when nothing answers. */
  function unreachable(): void {
    sm.reset();
    sm.on(GetSecretValueCommand).rejects(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:443'), { code: 'ECONNREFUSED', $metadata: { attempts: 3 } }));
  }

  async function installed(): Promise<{ mta: { secretFile: string; caFiles: string[] }; proxy: { secretFile: string; certFile: string; keyFile: string; name: string; ip: string }; snapshot: () => string[] }> {
    store(GENERATED);
    await initProxyLinkSecret(client, IDS, { label: 'dev' });
    const dir = tempDir();
    const mta = { secretFile: join(dir, 'mta.secret'), caFiles: [join(dir, 'proxy-ca.crt')] };
    const proxy = { secretFile: join(dir, 'proxy.secret'), certFile: join(dir, 'proxy.crt'), keyFile: join(dir, 'proxy.key'), name: 'proxy-a1', ip: '127.0.0.1' };
    expect(await fetchMtaLinkFiles(client, ID, mta, me, () => undefined)).toBe('written');
    expect(await fetchProxyLinkFiles(client, IDS, proxy, me, () => undefined)).toBe('written');
    const snapshot = (): string[] => readdirSync(dir).sort().map((n) => `${n}:${readFileSync(join(dir, n), 'utf8')}`);
    return { mta, proxy, snapshot };
  }

  test('an MTA and a proxy start with the files already on disk, unchanged, and say so', async () => {
    const { mta, proxy, snapshot } = await installed();
    const before = snapshot();
    unreachable();
    const warnings: string[] = [];
    expect(await fetchMtaLinkFiles(client, ID, mta, me, (m) => warnings.push(m))).toBe('kept');
    expect(await fetchProxyLinkFiles(client, IDS, proxy, me, (m) => warnings.push(m))).toBe('kept');
    expect(snapshot()).toEqual(before);
    expect(warnings).toEqual([expect.stringMatching(/ECONNREFUSED.*files already on disk.*mta\.secret/), expect.stringMatching(/ECONNREFUSED.*files already on disk.*proxy\.crt/)]);
    // And those files still make a verified link.
    expect(await handshake({ cert: readFileSync(proxy.certFile, 'utf8'), key: readFileSync(proxy.keyFile, 'utf8') }, readFileSync(mta.caFiles[0] as string, 'utf8'))).toBe(true);
  });

  test('with no usable files on disk the start fails, naming the file and the AWS error', async () => {
    const { mta, proxy } = await installed();
    unreachable();
    writeFileSync(mta.secretFile, 'short');
    await expect(fetchMtaLinkFiles(client, ID, mta, me, () => undefined)).rejects.toMatchObject({
      code: 'EPROXYLINK',
      message: expect.stringMatching(/ECONNREFUSED.*cannot be used instead.*mta\.secret holds less than 32 bytes/),
    });
    // A key that is not the certificate's.
    writeFileSync(proxy.keyFile, (await newProxyCa('other')).key);
    await expect(fetchProxyLinkFiles(client, IDS, proxy, me, () => undefined)).rejects.toMatchObject({ code: 'EPROXYLINK', message: expect.stringContaining('proxy.key is not the key of') });
    const empty = tempDir();
    await expect(fetchMtaLinkFiles(client, ID, { secretFile: join(empty, 's'), caFiles: [join(empty, 'ca')] }, me, () => undefined)).rejects.toMatchObject({
      code: 'EPROXYLINK',
      message: expect.stringContaining('ENOENT'),
    });
  });

  test('an endpoint that accepts and never answers is an outage too: the client gives up and the files on disk are kept', async () => {
    const { mta, snapshot } = await installed();
    const before = snapshot();
    const sockets = new Set<Socket>();
    const silent = createTcpServer((socket) => sockets.add(socket));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    // Also when the fetch never returns (no timeouts): jest's timeout fails the test, and this lets the run end.
    cleanups.push(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((r) => silent.close(r));
    });
    const real = secretsManagerClient(
      { region: 'eu-west-1', endpoint: `http://127.0.0.1:${(silent.address() as { port: number }).port}`, credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'example' }, maxAttempts: 1 },
      { connectionTimeout: 200, requestTimeout: 200 },
    );
    try {
      const warnings: string[] = [];
      expect(await fetchMtaLinkFiles(real, ID, mta, me, (m) => warnings.push(m))).toBe('kept');
      expect(sockets.size).toBe(1);
      expect(warnings).toEqual([expect.stringContaining('files already on disk')]);
      expect(snapshot()).toEqual(before);
    } finally {
      real.destroy();
    }
  });

  test('an answer that refuses (no such secret) is not an outage: the start fails even with files on disk', async () => {
    const { mta } = await installed();
    sm.reset();
    sm.on(GetSecretValueCommand).rejects(new ResourceNotFoundException({ message: 'Secrets Manager can\'t find the specified secret.', $metadata: { httpStatusCode: 400 } }));
    await expect(fetchMtaLinkFiles(client, ID, mta, me, () => undefined)).rejects.toMatchObject({ code: 'EPROXYLINK', message: expect.stringContaining('can\'t find') });
  });
});

test('fetch before init, a bad secret, or a wildcard listen address fail with EPROXYLINK and write nothing', async () => {
  store(GENERATED);
  const s = await readProxyLinkSecret(client, ID);
  const dir = tempDir();
  await expect(installMtaLinkFiles(s, ID, { secretFile: join(dir, 's'), caFiles: [join(dir, 'ca')] })).rejects.toMatchObject({
    code: 'EPROXYLINK',
    message: expect.stringContaining('volley proxy-link init'),
  });
  expect(readdirSync(dir)).toEqual([]);

  store('not json {');
  await expect(readProxyLinkSecret(client, ID)).rejects.toMatchObject({ code: 'EPROXYLINK', message: expect.stringContaining('not JSON') });
  store(JSON.stringify({ secret: 'short' }));
  await expect(readProxyLinkSecret(client, ID)).rejects.toMatchObject({ code: 'EPROXYLINK', message: expect.stringContaining('at least 32 bytes') });
  // The message names the problem, never the value.
  await expect(readProxyLinkSecret(client, ID)).rejects.toThrow(expect.objectContaining({ message: expect.not.stringContaining('short') }));

  store(GENERATED);
  await initProxyLinkSecret(client, IDS, { label: 'dev' });
  const withCa = await readProxyLinkSecret(client, ID);
  const files = { secretFile: join(dir, 's'), certFile: join(dir, 'c'), keyFile: join(dir, 'k'), name: 'p', ip: '0.0.0.0' };
  await expect(installProxyLinkFiles(withCa, await caOf(withCa), files)).rejects.toMatchObject({ code: 'EPROXYLINK' });
  // A proxy before init: no CA to issue from, and the message names init.
  store(GENERATED);
  await expect(fetchProxyLinkFiles(client, IDS, { ...files, ip: '127.0.0.1' }, me, () => undefined)).rejects.toMatchObject({
    code: 'EPROXYLINK',
    message: expect.stringContaining('volley proxy-link init'),
  });
  expect(readdirSync(dir)).toEqual([]);
});

test('the stored form round-trips', () => {
  const s = { secret: 'x'.repeat(40), previousSecret: 'y'.repeat(40), caCert: '-----BEGIN CERTIFICATE-----\nA\n', previousCaCert: '-----BEGIN CERTIFICATE-----\nC\n' };
  expect(parseProxyLinkSecret(formatProxyLinkSecret(s), ID)).toEqual({ ...s, legacyCaKey: undefined });
  expect(() => parseProxyLinkSecret(JSON.stringify({ secret: 'x'.repeat(40), previous_secret: 'short' }), ID)).toThrow(/previous_secret.*32 bytes/);
  expect(parseProxyCaSecret(GENERATED_CA, CA_ID)).toBeUndefined();
  expect(() => parseProxyCaSecret(JSON.stringify({ ca_cert: s.caCert }), CA_ID)).toThrow(/go together/);
});
