// The proxy-link secret on an instance: what `volley proxy-link init` puts in
// Secrets Manager and what `fetch` writes from it. Secrets Manager is mocked
// (aws-sdk-client-mock); the certificates are checked by a real TLS
// handshake on 127.0.0.1, the way an MTA checks a proxy.
import { GetSecretValueCommand, PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import {
  formatProxyLinkSecret,
  initProxyLinkSecret,
  installMtaLinkFiles,
  installProxyLinkFiles,
  parseProxyLinkSecret,
  readProxyLinkSecret,
  type ProxyLinkSecret,
} from '../../../runtime/bootstrap/proxy-link';

const ID = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:volley/dev/proxy-link-AbCdEf';
// What CloudFormation's generateSecretString leaves in the secret before init.
const GENERATED = JSON.stringify({ secret: 'Q'.repeat(64) });

const sm = mockClient(SecretsManagerClient);
const client = new SecretsManagerClient({ region: 'eu-west-1' });
const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

/** A secret store of one value, as Secrets Manager keeps it. */
function store(initial: string): { value: () => string } {
  let value = initial;
  sm.reset();
  sm.on(GetSecretValueCommand, { SecretId: ID }).callsFake(async () => ({ SecretString: value }));
  sm.on(PutSecretValueCommand, { SecretId: ID }).callsFake(async (input: { SecretString: string }) => {
    value = input.SecretString;
    return {};
  });
  return { value: () => value };
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
  await installProxyLinkFiles(s, ID, files, me);
  return { dir, cert: readFileSync(files.certFile, 'utf8'), key: readFileSync(files.keyFile, 'utf8') };
}

async function mtaBundle(s: ProxyLinkSecret): Promise<{ dir: string; ca: string }> {
  const dir = tempDir();
  await installMtaLinkFiles(s, ID, { secretFile: join(dir, 'proxy.secret'), caFiles: [join(dir, 'proxy-ca.crt'), join(dir, 'proxy-ca.crt')] }, me);
  return { dir, ca: readFileSync(join(dir, 'proxy-ca.crt'), 'utf8') };
}

test('init adds a CA to the generated secret, keeps the generated shared secret, and prints nothing secret', async () => {
  const secret = store(GENERATED);
  const result = await initProxyLinkSecret(client, ID, { label: 'dev' });
  const stored = parseProxyLinkSecret(secret.value(), ID);
  expect(stored.secret).toBe('Q'.repeat(64));
  expect(stored.caCert).toContain('BEGIN CERTIFICATE');
  expect(stored.caKey).toContain('PRIVATE KEY');
  expect(result.changed).toEqual(['ca']);
  expect(JSON.stringify(result)).not.toContain('PRIVATE KEY');
  expect(JSON.stringify(result)).not.toContain('Q'.repeat(64));

  // A second init changes nothing (and writes nothing).
  sm.resetHistory();
  expect((await initProxyLinkSecret(client, ID, { label: 'dev' })).changed).toEqual([]);
  expect(sm.commandCalls(PutSecretValueCommand)).toHaveLength(0);
});

test('a proxy and an MTA fetched from the same secret complete a verified TLS handshake, with the files 0600 for the daemon user', async () => {
  const secret = store(GENERATED);
  await initProxyLinkSecret(client, ID, { label: 'dev' });
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
  await initProxyLinkSecret(client, ID, { label: 'dev' });
  const oldProxy = await proxyFiles(await readProxyLinkSecret(client, ID));

  const rotated = await initProxyLinkSecret(client, ID, { label: 'dev', rotateCa: true });
  expect(rotated.changed).toEqual(['ca (previous kept as previous_ca_cert)']);
  const during = await readProxyLinkSecret(client, ID);
  const newProxy = await proxyFiles(during);
  const mtaDuring = await mtaBundle(during);
  expect(await handshake(oldProxy, mtaDuring.ca)).toBe(true);
  expect(await handshake(newProxy, mtaDuring.ca)).toBe(true);

  await initProxyLinkSecret(client, ID, { label: 'dev', dropPreviousCa: true });
  const mtaAfter = await mtaBundle(await readProxyLinkSecret(client, ID));
  expect(await handshake(newProxy, mtaAfter.ca)).toBe(true);
  expect(await handshake(oldProxy, mtaAfter.ca)).toBe(false);
});

test('--rotate-secret makes a new shared secret of 64 hex characters', async () => {
  const secret = store(GENERATED);
  await initProxyLinkSecret(client, ID, { label: 'dev', rotateSecret: true });
  const stored = parseProxyLinkSecret(secret.value(), ID).secret;
  expect(stored).toMatch(/^[0-9a-f]{64}$/);
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
  await initProxyLinkSecret(client, ID, { label: 'dev' });
  const withCa = await readProxyLinkSecret(client, ID);
  const files = { secretFile: join(dir, 's'), certFile: join(dir, 'c'), keyFile: join(dir, 'k'), name: 'p', ip: '0.0.0.0' };
  await expect(installProxyLinkFiles(withCa, ID, files)).rejects.toMatchObject({ code: 'EPROXYLINK' });
  expect(readdirSync(dir)).toEqual([]);
});

test('the stored form round-trips', () => {
  const s = { secret: 'x'.repeat(40), caCert: '-----BEGIN CERTIFICATE-----\nA\n', caKey: '-----BEGIN PRIVATE KEY-----\nB\n' };
  expect(parseProxyLinkSecret(formatProxyLinkSecret(s), ID)).toEqual({ ...s, previousCaCert: undefined });
});
