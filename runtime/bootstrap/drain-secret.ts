// The drain's secrets on an MTA instance, from the environment's
// `volley/<env>/drain` Secrets Manager secret (stacks/secrets-stack.ts): the
// HMAC secret `volley drain` signs its batches with and every drain endpoint
// checks, and the drain CA. Before each MTA start (volley-mta.service) `volley
// drain-secret fetch` writes the secret where the generated config's
// drain.secret_file points, the CA certificate that `volley drain --ca-file`
// verifies destinations with, and a fresh certificate for this instance's
// private IP (drain.tls), issued by that CA: so a source knows that the
// endpoint answering "queued" (after which it deletes its copy) is another
// MTA of the environment, not whoever sits on the address. `volley
// drain-secret init` adds the CA once after the first deploy, as `volley
// proxy-link init` does for the proxies. Read only by MTA slots: a proxy
// has no queue to drain. Files are 0600 for the daemon's user, replaced
// atomically; when AWS cannot be reached, whole files on disk are kept (with
// a warning), as the proxy link's are.
import { PutSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { VolleyError } from '../shared/errors';
import { checkSecretFile, issueProxyCertificate, newProxyCa, previousSecretFile, readSecretString, withFallback, writePrivateFile, type FileOwner } from './proxy-link';

/** What the secret holds (JSON, snake_case as stored). */
export interface DrainSecret {
  /** >= 32 bytes: what both ends of a drain prove they hold. */
  readonly secret: string;
  /** The secret before a rotation: destinations keep accepting it until every MTA has restarted. */
  readonly previousSecret?: string;
  /** The drain CA (added by init): every MTA's drain certificate is issued from it, and sources trust only it. */
  readonly caCert?: string;
  readonly caKey?: string;
}

/** Where an MTA keeps the drain's files (the generated config and the SSM document name the same paths). */
export interface DrainFiles {
  readonly secretFile: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** The instance's private IP: the drain certificate is issued for it. */
  readonly ip: string;
}

const MIN_SECRET_BYTES = 32;

/**
 * Which secret of this shape it is: the drain's, or the HA mirror's
 * (runtime/bootstrap/mirror-secret.ts), which holds the same fields for the
 * same purpose (an HMAC secret, and a CA that issues each node a certificate
 * for the address its peers dial). Errors carry its code and name its command.
 */
export interface CaSecretKind {
  /** In the CA's and certificates' names: "drain", "mirror". */
  readonly name: string;
  readonly code: string;
  /** The command that adds the CA: `volley drain-secret`, `volley mirror-secret`. */
  readonly command: string;
}

export const DRAIN_SECRET_KIND: CaSecretKind = { name: 'drain', code: 'EDRAINSECRET', command: 'volley drain-secret' };

function failAs(kind: CaSecretKind, message: string): never {
  throw new VolleyError(kind.code, message);
}

function pem(value: unknown, field: string, secretId: string, kind: CaSecretKind): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !value.includes('-----BEGIN ')) failAs(kind, `secret ${secretId}: ${field} is not a PEM text`);
  return value;
}

/** Parses and checks the stored JSON; the message never contains a value. */
export function parseDrainSecret(text: string, secretId: string, kind: CaSecretKind = DRAIN_SECRET_KIND): DrainSecret {
  const fail = (message: string): never => failAs(kind, message);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    fail(`secret ${secretId}: not JSON (expected {"secret": ...})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) fail(`secret ${secretId}: expected a JSON object`);
  const d = doc as Record<string, unknown>;
  for (const key of ['secret', 'previous_secret']) {
    const value = d[key];
    if (value === undefined && key === 'previous_secret') continue;
    if (typeof value !== 'string' || Buffer.byteLength(value) < MIN_SECRET_BYTES) fail(`secret ${secretId}: "${key}" must be a string of at least ${MIN_SECRET_BYTES} bytes`);
  }
  const caCert = pem(d.ca_cert, 'ca_cert', secretId, kind);
  const caKey = pem(d.ca_key, 'ca_key', secretId, kind);
  if ((caCert === undefined) !== (caKey === undefined)) fail(`secret ${secretId}: ca_cert and ca_key go together`);
  return { secret: d.secret as string, previousSecret: d.previous_secret as string | undefined, caCert, caKey };
}

export function formatDrainSecret(s: DrainSecret): string {
  return JSON.stringify({ secret: s.secret, previous_secret: s.previousSecret, ca_cert: s.caCert, ca_key: s.caKey });
}

/**
 * `volley drain-secret init`: adds the drain CA to the secret, once; the
 * shared secret (generated by CloudFormation) is kept. Returns what changed
 * and the CA's fingerprint, nothing secret.
 */
export async function initDrainSecret(client: SecretsManagerClient, secretId: string, label: string, kind: CaSecretKind = DRAIN_SECRET_KIND): Promise<{ changed: string[]; caFingerprint: string }> {
  const current = parseDrainSecret(await readSecretString(client, secretId), secretId, kind);
  if (current.caCert) return { changed: [], caFingerprint: new X509Certificate(current.caCert).fingerprint256 };
  const ca = await newProxyCa(`${kind.name} ${label}`);
  await client.send(new PutSecretValueCommand({ SecretId: secretId, SecretString: formatDrainSecret({ ...current, caCert: ca.cert, caKey: ca.key }) }));
  return { changed: ['ca'], caFingerprint: new X509Certificate(ca.cert).fingerprint256 };
}

/** Writes the secret (and `<file>.previous` during a rotation, removed otherwise), the CA, and a certificate for `files.ip`. */
export async function installDrainFiles(s: DrainSecret, secretId: string, files: DrainFiles, owner?: FileOwner, kind: CaSecretKind = DRAIN_SECRET_KIND): Promise<void> {
  if (!s.caCert || !s.caKey) failAs(kind, `secret ${secretId} has no ${kind.name} CA yet: run \`${kind.command} init --secret-id ${secretId}\` once`);
  if (isIP(files.ip) === 0 || files.ip === '0.0.0.0') failAs(kind, `"${files.ip}" is not this instance's IP: the ${kind.name} certificate is issued for the address its peers dial`);
  // The previous one first: a start between the writes accepts both, never only the new one while sources still sign with the old.
  if (s.previousSecret) await writePrivateFile(previousSecretFile(files.secretFile), s.previousSecret, owner);
  await writePrivateFile(files.secretFile, s.secret, owner);
  if (!s.previousSecret) await rm(previousSecretFile(files.secretFile), { force: true });
  const pair = await issueProxyCertificate({ cert: s.caCert, key: s.caKey }, { name: `volley ${kind.name} ${files.ip}`, ip: files.ip });
  await writePrivateFile(files.caFile, s.caCert, owner);
  // The key first: a start between the two renames finds a key that matches no certificate and fails loudly, never the reverse.
  await writePrivateFile(files.keyFile, pair.key, owner);
  await writePrivateFile(files.certFile, pair.cert, owner);
}

/** Whether the files on disk can serve a start while AWS is unreachable. */
async function checkDrainFiles(files: DrainFiles): Promise<void> {
  await checkSecretFile(files.secretFile);
  const cert = new X509Certificate(await readFile(files.certFile));
  if (Date.parse(cert.validTo) <= Date.now()) throw new Error(`${files.certFile} expired on ${cert.validTo}`);
  if (!cert.checkPrivateKey(createPrivateKey(await readFile(files.keyFile)))) throw new Error(`${files.keyFile} is not the key of ${files.certFile}`);
  new X509Certificate(await readFile(files.caFile));
}

/** `volley drain-secret fetch`: the files from the secret, or the ones on disk when AWS is unreachable. */
export async function fetchDrainFiles(
  client: SecretsManagerClient,
  secretId: string,
  files: DrainFiles,
  owner: FileOwner | undefined,
  warn: (message: string) => void,
  kind: CaSecretKind = DRAIN_SECRET_KIND,
): Promise<'written' | 'kept'> {
  return withFallback(
    // readSecretString fails with the proxy link's "unreachable" code when AWS does not answer: the fallback keys on it.
    async () => installDrainFiles(parseDrainSecret(await readSecretString(client, secretId), secretId, kind), secretId, files, owner, kind),
    () => checkDrainFiles(files),
    [files.secretFile, files.caFile, files.certFile, files.keyFile],
    warn,
  );
}
