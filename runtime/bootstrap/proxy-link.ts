// The MTA↔proxy link's secrets on an instance, from the environment's two
// Secrets Manager secrets (stacks/secrets-stack.ts): the link secret (the
// shared HMAC secret and the proxy CA's certificate), which every slot reads,
// and the CA key secret (the CA's certificate and private key), which only
// proxy slots read: an MTA never holds the key, so a compromised MTA cannot
// mint a certificate for a proxy's address. A proxy gets a certificate for
// its own listen address, issued by that CA at each start; an MTA gets the CA
// (plus the previous one during a rotation) to pin every proxy with.
// `volley proxy-link init` puts the CA into the secrets once; every file is
// written 0600 for the daemon's user and replaced atomically, so a daemon
// never reads half of one.
import { GetSecretValueCommand, PutSecretValueCommand, SecretsManagerClient, type SecretsManagerClientConfig } from '@aws-sdk/client-secrets-manager';
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { chown, open, readFile, rename, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { generate } from 'selfsigned';
import { VolleyError, errorCode } from '../shared/errors';

/** What the link secret holds (JSON, snake_case keys as stored). */
export interface ProxyLinkSecret {
  /** The HMAC secret both ends prove they hold (>= 32 bytes). */
  readonly secret: string;
  /** The shared secret before the last rotation: proxies accept it until every MTA has restarted. */
  readonly previousSecret?: string;
  readonly caCert?: string;
  /** The CA before the last rotation: MTAs keep trusting it until every proxy has restarted. */
  readonly previousCaCert?: string;
  /**
   * Where the CA key was kept before it had a secret of its own. Read only so
   * that proxies keep starting until `init` moves it (which removes it here).
   */
  readonly legacyCaKey?: string;
}

/** What the CA key secret holds: the pair proxies issue their certificates from. */
export interface ProxyCa {
  readonly cert: string;
  readonly key: string;
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

/**
 * Limits on one Secrets Manager call. Without them the SDK waits forever on an
 * endpoint that accepts and never answers, and the unit's start hangs instead
 * of falling back to the files on disk (the SDK tries 3 times: ~35 s at most).
 */
export const SECRETS_MANAGER_TIMEOUTS = { connectionTimeout: 5_000, requestTimeout: 10_000 };

export function secretsManagerClient(config: SecretsManagerClientConfig = {}, timeouts = SECRETS_MANAGER_TIMEOUTS): SecretsManagerClient {
  return new SecretsManagerClient({ ...config, requestHandler: { ...timeouts, throwOnRequestTimeout: true } });
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
  if (d.previous_secret !== undefined && (typeof d.previous_secret !== 'string' || Buffer.byteLength(d.previous_secret) < MIN_SECRET_BYTES)) {
    fail(`secret ${secretId}: "previous_secret" must be a string of at least ${MIN_SECRET_BYTES} bytes`);
  }
  const caCert = pem(d.ca_cert, 'ca_cert', secretId);
  const legacyCaKey = pem(d.ca_key, 'ca_key', secretId);
  if (legacyCaKey !== undefined && caCert === undefined) fail(`secret ${secretId}: ca_key without ca_cert`);
  return { secret: d.secret, previousSecret: d.previous_secret as string | undefined, caCert, previousCaCert: pem(d.previous_ca_cert, 'previous_ca_cert', secretId), legacyCaKey };
}

export function formatProxyLinkSecret(s: ProxyLinkSecret): string {
  return JSON.stringify({ secret: s.secret, previous_secret: s.previousSecret, ca_cert: s.caCert, previous_ca_cert: s.previousCaCert, ca_key: s.legacyCaKey });
}

/**
 * The CA key secret: `{"ca_cert", "ca_key"}` once init has run. Before, it
 * holds what CloudFormation generated (`{"placeholder": …}`): no CA yet.
 */
export function parseProxyCaSecret(text: string, secretId: string): ProxyCa | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    fail(`secret ${secretId}: not JSON (expected {"ca_cert": ..., "ca_key": ...})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) fail(`secret ${secretId}: expected a JSON object`);
  const d = doc as Record<string, unknown>;
  const cert = pem(d.ca_cert, 'ca_cert', secretId);
  const key = pem(d.ca_key, 'ca_key', secretId);
  if ((cert === undefined) !== (key === undefined)) fail(`secret ${secretId}: ca_cert and ca_key go together`);
  return cert !== undefined && key !== undefined ? { cert, key } : undefined;
}

export function formatProxyCaSecret(ca: ProxyCa): string {
  return JSON.stringify({ ca_cert: ca.cert, ca_key: ca.key });
}

/** The secret's string value; an error says whether AWS could not be reached (see unreachable below). */
export async function readSecretString(client: SecretsManagerClient, secretId: string): Promise<string> {
  let text: string | undefined;
  try {
    text = (await client.send(new GetSecretValueCommand({ SecretId: secretId }))).SecretString;
  } catch (err) {
    throw new VolleyError(unreachable(err) ? 'EPROXYLINKUNREACHABLE' : 'EPROXYLINK', `cannot read secret ${secretId}: ${(err as Error).message}`, { cause: err });
  }
  if (text === undefined) fail(`secret ${secretId} has no string value`);
  return text;
}

/**
 * AWS did not answer, or answered that it cannot now (5xx, throttling): a
 * start may go on with the files already on disk. An answer that refuses
 * (access denied, no such secret) is a deployment error and must stop it.
 */
function unreachable(err: unknown): boolean {
  const e = err as { $metadata?: { httpStatusCode?: number }; $fault?: string; $retryable?: unknown; name?: string };
  if (e?.$metadata?.httpStatusCode === undefined) return true;
  return e.$fault === 'server' || e.$retryable !== undefined || /Throttl/.test(e.name ?? '');
}

export async function readProxyLinkSecret(client: SecretsManagerClient, secretId: string): Promise<ProxyLinkSecret> {
  return parseProxyLinkSecret(await readSecretString(client, secretId), secretId);
}

export async function readProxyCaSecret(client: SecretsManagerClient, secretId: string): Promise<ProxyCa | undefined> {
  return parseProxyCaSecret(await readSecretString(client, secretId), secretId);
}

function requireCaCert(s: ProxyLinkSecret, secretId: string): string {
  if (!s.caCert) fail(`secret ${secretId} has no proxy CA yet: run \`volley proxy-link init --secret-id ${secretId}\` once`);
  return s.caCert;
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

/** Where an instance's link files come from: the link secret, and (proxies only) the CA key secret. */
export interface SecretIds {
  readonly secretId: string;
  readonly caSecretId?: string;
}

/** The path the proxy reads the previous shared secret from during a rotation (its default previous_secret_file). */
export function previousSecretFile(secretFile: string): string {
  return `${secretFile}.previous`;
}

/** An MTA's files: the shared secret and the CA bundle it pins the proxies with. */
export async function installMtaLinkFiles(s: ProxyLinkSecret, secretId: string, files: { secretFile: string; caFiles: readonly string[] }, owner?: FileOwner): Promise<void> {
  const caCert = requireCaCert(s, secretId);
  // Both CAs during a rotation, so proxies on either one are accepted.
  const bundle = [caCert, s.previousCaCert].filter((c): c is string => c !== undefined).map((c) => c.trim() + '\n').join('');
  await writePrivateFile(files.secretFile, s.secret, owner);
  for (const caFile of new Set(files.caFiles)) await writePrivateFile(caFile, bundle, owner);
}

/**
 * The pair a proxy issues from: the CA key secret's, or (until `init` has
 * moved it) the key still kept in the link secret. Refused if the MTAs do not
 * trust it: a certificate they would reject is worse than a loud failure.
 */
export function issuingCa(s: ProxyLinkSecret, ca: ProxyCa | undefined, ids: SecretIds): { ca: ProxyCa; legacy: boolean } {
  const caCert = requireCaCert(s, ids.secretId);
  if (ca) {
    if (ca.cert !== caCert && ca.cert !== s.previousCaCert) {
      fail(`secret ${ids.caSecretId ?? '(CA key)'} holds a CA the MTAs do not trust (not ca_cert or previous_ca_cert of ${ids.secretId}): run \`volley proxy-link init\` again`);
    }
    return { ca, legacy: false };
  }
  if (s.legacyCaKey) return { ca: { cert: caCert, key: s.legacyCaKey }, legacy: true };
  if (!ids.caSecretId) fail('no CA key secret: pass --ca-key-secret-id or set VOLLEY_PROXY_CA_KEY_SECRET');
  fail(`secret ${ids.caSecretId} has no proxy CA yet: run \`volley proxy-link init --secret-id ${ids.secretId}\` once`);
}

/** A proxy's files: the shared secret (and the previous one during a rotation) and a fresh certificate for its listen IP. */
export async function installProxyLinkFiles(
  s: ProxyLinkSecret,
  ca: ProxyCa,
  files: { secretFile: string; certFile: string; keyFile: string; name: string; ip: string },
  owner?: FileOwner,
): Promise<void> {
  // MTAs check the address they dial; a wildcard listen address names none.
  if (isIP(files.ip) === 0 || files.ip === '0.0.0.0' || files.ip === '::') fail(`the proxy listens on "${files.ip}": give it the IP the MTAs dial, its certificate is issued for that address`);
  const pair = await issueProxyCertificate(ca, { name: files.name, ip: files.ip });
  // The previous secret first: a proxy started between the writes then accepts both, never only the new one while MTAs still use the old.
  if (s.previousSecret) await writePrivateFile(previousSecretFile(files.secretFile), s.previousSecret, owner);
  await writePrivateFile(files.secretFile, s.secret, owner);
  if (!s.previousSecret) await rm(previousSecretFile(files.secretFile), { force: true });
  // The key first: a restart between the two renames then finds a key that matches no certificate and fails loudly, never the reverse.
  await writePrivateFile(files.keyFile, pair.key, owner);
  await writePrivateFile(files.certFile, pair.cert, owner);
}

export interface InitOptions {
  /** A new CA; the current one becomes previous_ca_cert. */
  readonly rotateCa?: boolean;
  /** A new shared secret; the current one becomes previous_secret, which proxies keep accepting. */
  readonly rotateSecret?: boolean;
  /** Forget previous_ca_cert, once every proxy runs on the new CA. */
  readonly dropPreviousCa?: boolean;
  /** Forget previous_secret, once every MTA runs with the new secret. */
  readonly dropPreviousSecret?: boolean;
  readonly label: string;
}

/** What init changed and the CA's fingerprint: nothing secret. */
export interface InitResult {
  readonly changed: string[];
  readonly caFingerprint: string;
}

/**
 * Adds the CA to the secrets (first run), moves a CA key still kept in the
 * link secret into the CA key secret, or rotates as asked; values never
 * leave AWS but for this call. Writes are ordered so that an interruption
 * leaves every proxy issuing from a CA the MTAs trust: the link secret (what
 * MTAs trust) before the CA key secret gets a new CA, the CA key secret
 * before a key is removed from the link secret.
 */
export async function initProxyLinkSecret(client: SecretsManagerClient, ids: Required<SecretIds>, options: InitOptions): Promise<InitResult> {
  if (options.dropPreviousCa && options.rotateCa) fail('--drop-previous-ca with --rotate-ca would leave MTAs unable to reach proxies still on the old CA');
  if (options.dropPreviousSecret && options.rotateSecret) fail('--drop-previous-secret with --rotate-secret would cut every MTA still on the old secret');
  const current = await readProxyLinkSecret(client, ids.secretId);
  const held = await readProxyCaSecret(client, ids.caSecretId);
  const changed: string[] = [];
  // The pair proxies issue from today, wherever it is kept.
  const issuing = held ?? (current.caCert && current.legacyCaKey ? { cert: current.caCert, key: current.legacyCaKey } : undefined);
  if (!held && issuing) {
    await client.send(new PutSecretValueCommand({ SecretId: ids.caSecretId, SecretString: formatProxyCaSecret(issuing) }));
    changed.push(`ca_key moved to ${ids.caSecretId}`);
  } else if (current.legacyCaKey) {
    changed.push(`ca_key removed (${ids.caSecretId} holds the CA)`);
  }
  let next: ProxyLinkSecret = { ...current, legacyCaKey: undefined };
  let newCa: ProxyCa | undefined;
  if (!issuing || issuing.cert !== current.caCert || options.rotateCa) {
    newCa = await newProxyCa(options.label);
    // Proxies keep issuing from the old pair until they restart: MTAs keep trusting it.
    next = { ...next, caCert: newCa.cert, previousCaCert: issuing?.cert ?? current.previousCaCert };
    changed.push(!current.caCert ? 'ca' : issuing?.cert === current.caCert ? 'ca (previous kept as previous_ca_cert)' : 'ca (the stored one had no key: replaced)');
  }
  if (options.rotateSecret) {
    next = { ...next, secret: randomBytes(32).toString('hex'), previousSecret: current.secret };
    changed.push('secret (previous kept as previous_secret)');
  }
  if (options.dropPreviousCa && next.previousCaCert) {
    next = { ...next, previousCaCert: undefined };
    changed.push('previous_ca_cert dropped');
  }
  if (options.dropPreviousSecret && next.previousSecret) {
    next = { ...next, previousSecret: undefined };
    changed.push('previous_secret dropped');
  }
  if (changed.length > 0) await client.send(new PutSecretValueCommand({ SecretId: ids.secretId, SecretString: formatProxyLinkSecret(next) }));
  if (newCa) await client.send(new PutSecretValueCommand({ SecretId: ids.caSecretId, SecretString: formatProxyCaSecret(newCa) }));
  return { changed, caFingerprint: new X509Certificate(next.caCert as string).fingerprint256 };
}

/** Why the files on disk cannot stand in for the secret, or undefined if they can. */
async function filesProblem(check: () => Promise<void>): Promise<string | undefined> {
  try {
    await check();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export async function checkSecretFile(path: string): Promise<void> {
  if (Buffer.byteLength((await readFile(path, 'utf8')).trim()) < MIN_SECRET_BYTES) throw new Error(`${path} holds less than ${MIN_SECRET_BYTES} bytes`);
}

function checkCurrent(cert: X509Certificate, path: string): void {
  if (Date.parse(cert.validTo) <= Date.now()) throw new Error(`${path} expired on ${cert.validTo}`);
}

/**
 * Runs `write` with what AWS returns; when AWS cannot be reached, keeps the
 * files already on disk if they are whole (a restart during an API outage
 * must not take a daemon down), warning so. Any other failure, or unusable
 * files, stops the start.
 */
export async function withFallback(write: () => Promise<void>, check: () => Promise<void>, paths: readonly string[], warn: (message: string) => void): Promise<'written' | 'kept'> {
  try {
    await write();
    return 'written';
  } catch (err) {
    if (errorCode(err) !== 'EPROXYLINKUNREACHABLE') throw err;
    const problem = await filesProblem(check);
    if (problem !== undefined) throw new VolleyError('EPROXYLINK', `${(err as Error).message}; the files on disk cannot be used instead: ${problem}`, { cause: err });
    warn(`${(err as Error).message}; starting with the files already on disk (${paths.join(', ')}), which may predate a rotation`);
    return 'kept';
  }
}

/** `volley proxy-link fetch mta`: the secret and CA bundle, or the ones on disk when AWS is unreachable. */
export async function fetchMtaLinkFiles(
  client: SecretsManagerClient,
  secretId: string,
  files: { secretFile: string; caFiles: readonly string[] },
  owner: FileOwner | undefined,
  warn: (message: string) => void,
): Promise<'written' | 'kept'> {
  const caFiles = [...new Set(files.caFiles)];
  return withFallback(
    async () => installMtaLinkFiles(await readProxyLinkSecret(client, secretId), secretId, files, owner),
    async () => {
      await checkSecretFile(files.secretFile);
      for (const caFile of caFiles) checkCurrent(new X509Certificate(await readFile(caFile)), caFile);
    },
    [files.secretFile, ...caFiles],
    warn,
  );
}

/** `volley proxy-link fetch proxy`: the secret(s) and a new certificate, or the ones on disk when AWS is unreachable. */
export async function fetchProxyLinkFiles(
  client: SecretsManagerClient,
  ids: SecretIds,
  files: { secretFile: string; certFile: string; keyFile: string; name: string; ip: string },
  owner: FileOwner | undefined,
  warn: (message: string) => void,
): Promise<'written' | 'kept'> {
  return withFallback(
    async () => {
      const s = await readProxyLinkSecret(client, ids.secretId);
      const held = ids.caSecretId ? await readProxyCaSecret(client, ids.caSecretId) : undefined;
      const { ca, legacy } = issuingCa(s, held, ids);
      if (legacy) warn(`the proxy CA key is still in ${ids.secretId}, which MTAs can read: run \`volley proxy-link init\` to move it to its own secret`);
      await installProxyLinkFiles(s, ca, files, owner);
    },
    async () => {
      await checkSecretFile(files.secretFile);
      const cert = new X509Certificate(await readFile(files.certFile));
      checkCurrent(cert, files.certFile);
      if (!cert.checkPrivateKey(createPrivateKey(await readFile(files.keyFile)))) throw new Error(`${files.keyFile} is not the key of ${files.certFile}`);
      if (cert.checkIP(files.ip) === undefined) throw new Error(`${files.certFile} is not for ${files.ip}`);
    },
    [files.secretFile, files.certFile, files.keyFile],
    warn,
  );
}
