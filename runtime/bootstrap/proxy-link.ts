// The MTA↔proxy link's secrets on an instance, from the environment's
// Secrets Manager secret (stacks/secrets-stack.ts): the shared HMAC secret,
// and the proxy CA. A proxy gets a certificate for its own listen address,
// issued by that CA at each start; an MTA gets the CA (plus the previous one
// during a rotation) to pin every proxy with. `volley proxy-link init` puts
// the CA into the secret once; every file is written 0600 for the daemon's
// user and replaced atomically, so a daemon never reads half of one.
import { GetSecretValueCommand, PutSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { X509Certificate, randomBytes } from 'node:crypto';
import { chown, open, rename, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { generate } from 'selfsigned';
import { VolleyError } from '../shared/errors';

/** What the secret holds (JSON, snake_case keys as stored). */
export interface ProxyLinkSecret {
  /** The HMAC secret both ends prove they hold (>= 32 bytes). */
  readonly secret: string;
  readonly caCert?: string;
  readonly caKey?: string;
  /** The CA before the last rotation: MTAs keep trusting it until every proxy has restarted. */
  readonly previousCaCert?: string;
}

export interface FileOwner {
  readonly uid: number;
  readonly gid: number;
}

const MIN_SECRET_BYTES = 32;
const CA_DAYS = 3650;
const LEAF_DAYS = 825;

function fail(message: string): never {
  throw new VolleyError('EPROXYLINK', message);
}

function pem(value: unknown, field: string, secretId: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !value.includes('-----BEGIN ')) fail(`secret ${secretId}: ${field} is not a PEM text`);
  return value;
}

/** Parses and checks the stored JSON; the message never contains a value. */
export function parseProxyLinkSecret(text: string, secretId: string): ProxyLinkSecret {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    fail(`secret ${secretId}: not JSON (expected {"secret": ..., "ca_cert": ..., "ca_key": ...})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) fail(`secret ${secretId}: expected a JSON object`);
  const d = doc as Record<string, unknown>;
  if (typeof d.secret !== 'string' || Buffer.byteLength(d.secret) < MIN_SECRET_BYTES) {
    fail(`secret ${secretId}: "secret" must be a string of at least ${MIN_SECRET_BYTES} bytes`);
  }
  const caCert = pem(d.ca_cert, 'ca_cert', secretId);
  const caKey = pem(d.ca_key, 'ca_key', secretId);
  if ((caCert === undefined) !== (caKey === undefined)) fail(`secret ${secretId}: ca_cert and ca_key go together`);
  return { secret: d.secret, caCert, caKey, previousCaCert: pem(d.previous_ca_cert, 'previous_ca_cert', secretId) };
}

export function formatProxyLinkSecret(s: ProxyLinkSecret): string {
  return JSON.stringify({ secret: s.secret, ca_cert: s.caCert, ca_key: s.caKey, previous_ca_cert: s.previousCaCert });
}

export async function readProxyLinkSecret(client: SecretsManagerClient, secretId: string): Promise<ProxyLinkSecret> {
  let text: string | undefined;
  try {
    text = (await client.send(new GetSecretValueCommand({ SecretId: secretId }))).SecretString;
  } catch (err) {
    throw new VolleyError('EPROXYLINK', `cannot read secret ${secretId}: ${(err as Error).message}`, { cause: err });
  }
  if (text === undefined) fail(`secret ${secretId} has no string value`);
  return parseProxyLinkSecret(text, secretId);
}

function requireCa(s: ProxyLinkSecret, secretId: string): { cert: string; key: string } {
  if (!s.caCert || !s.caKey) fail(`secret ${secretId} has no proxy CA yet: run \`volley proxy-link init --secret-id ${secretId}\` once`);
  return { cert: s.caCert, key: s.caKey };
}

/** A CA for one environment's proxy links: it signs nothing but proxy certificates. */
export async function newProxyCa(label: string): Promise<{ cert: string; key: string }> {
  // A distinct name per CA: during a rotation MTAs trust two CAs, and a proxy certificate's issuer is found by name.
  const pems = await generate([{ name: 'commonName', value: `Volley proxy CA ${label} ${randomBytes(6).toString('hex')}` }], {
    algorithm: 'sha256',
    keySize: 2048,
    notAfterDate: new Date(Date.now() + CA_DAYS * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/** A proxy's certificate for its listen IP, which is what the MTAs dial and check. */
export async function issueProxyCertificate(ca: { cert: string; key: string }, proxy: { name: string; ip: string }): Promise<{ cert: string; key: string }> {
  const pems = await generate([{ name: 'commonName', value: proxy.name }], {
    algorithm: 'sha256',
    keySize: 2048,
    notAfterDate: new Date(Date.now() + LEAF_DAYS * 86_400_000),
    ca,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 7, ip: proxy.ip }] },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/** Writes a file 0600 for `owner`, replacing any old one in one rename. */
export async function writePrivateFile(path: string, content: string, owner?: FileOwner): Promise<void> {
  const partial = `${path}.partial-${process.pid}`;
  const handle = await open(partial, 'w', 0o600);
  try {
    await handle.writeFile(content);
    await handle.chmod(0o600); // whatever the umask
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    if (owner) await chown(partial, owner.uid, owner.gid);
    await rename(partial, path);
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
}

/** An MTA's files: the shared secret and the CA bundle it pins the proxies with. */
export async function installMtaLinkFiles(s: ProxyLinkSecret, secretId: string, files: { secretFile: string; caFiles: readonly string[] }, owner?: FileOwner): Promise<void> {
  const ca = requireCa(s, secretId);
  // Both CAs during a rotation, so proxies on either one are accepted.
  const bundle = [ca.cert, s.previousCaCert].filter((c): c is string => c !== undefined).map((c) => c.trim() + '\n').join('');
  await writePrivateFile(files.secretFile, s.secret, owner);
  for (const caFile of new Set(files.caFiles)) await writePrivateFile(caFile, bundle, owner);
}

/** A proxy's files: the shared secret and a fresh certificate for its listen IP. */
export async function installProxyLinkFiles(
  s: ProxyLinkSecret,
  secretId: string,
  files: { secretFile: string; certFile: string; keyFile: string; name: string; ip: string },
  owner?: FileOwner,
): Promise<void> {
  // MTAs check the address they dial; a wildcard listen address names none.
  if (isIP(files.ip) === 0 || files.ip === '0.0.0.0' || files.ip === '::') fail(`the proxy listens on "${files.ip}": give it the IP the MTAs dial, its certificate is issued for that address`);
  const pair = await issueProxyCertificate(requireCa(s, secretId), { name: files.name, ip: files.ip });
  await writePrivateFile(files.secretFile, s.secret, owner);
  // The key first: a restart between the two renames then finds a key that matches no certificate and fails loudly, never the reverse.
  await writePrivateFile(files.keyFile, pair.key, owner);
  await writePrivateFile(files.certFile, pair.cert, owner);
}

export interface InitOptions {
  /** A new CA; the current one becomes previous_ca_cert. */
  readonly rotateCa?: boolean;
  /** A new shared secret (links fail until both ends have restarted). */
  readonly rotateSecret?: boolean;
  /** Forget previous_ca_cert, once every proxy runs on the new CA. */
  readonly dropPreviousCa?: boolean;
  readonly label: string;
}

/** What init changed and the CA's fingerprint: nothing secret. */
export interface InitResult {
  readonly changed: string[];
  readonly caFingerprint: string;
}

/** Adds the CA to the secret (first run), or rotates as asked; values never leave AWS but for this call. */
export async function initProxyLinkSecret(client: SecretsManagerClient, secretId: string, options: InitOptions): Promise<InitResult> {
  const current = await readProxyLinkSecret(client, secretId);
  const changed: string[] = [];
  let next: ProxyLinkSecret = current;
  if (!current.caCert || options.rotateCa) {
    const ca = await newProxyCa(options.label);
    next = { ...next, caCert: ca.cert, caKey: ca.key, previousCaCert: current.caCert ?? current.previousCaCert };
    changed.push(current.caCert ? 'ca (previous kept as previous_ca_cert)' : 'ca');
  }
  if (options.rotateSecret) {
    next = { ...next, secret: randomBytes(32).toString('hex') };
    changed.push('secret');
  }
  if (options.dropPreviousCa && next.previousCaCert) {
    if (options.rotateCa) fail('--drop-previous-ca with --rotate-ca would leave MTAs unable to reach proxies still on the old CA');
    next = { ...next, previousCaCert: undefined };
    changed.push('previous_ca_cert dropped');
  }
  if (changed.length > 0) await client.send(new PutSecretValueCommand({ SecretId: secretId, SecretString: formatProxyLinkSecret(next) }));
  return { changed, caFingerprint: new X509Certificate(next.caCert as string).fingerprint256 };
}
