// The drain secret on an MTA instance: the HMAC secret `volley drain` signs
// its batches with and every drain endpoint checks, kept in the environment's
// `volley/<env>/drain` Secrets Manager secret (stacks/secrets-stack.ts) and
// written to the file the generated config's drain.secret_file names before
// each MTA start (volley-mta.service), so a rotation reaches a node at its
// next restart. Read only by MTA slots: a proxy has no queue to drain and no
// business signing one. Written 0600 for the daemon's user, atomically, and,
// when AWS cannot be reached, the file already on disk is kept (with a
// warning), as the proxy link's are.
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { rm } from 'node:fs/promises';
import { VolleyError } from '../shared/errors';
import { checkSecretFile, previousSecretFile, readSecretString, withFallback, writePrivateFile, type FileOwner } from './proxy-link';

/** What the secret holds (JSON, snake_case as stored). */
export interface DrainSecret {
  /** >= 32 bytes: what both ends of a drain prove they hold. */
  readonly secret: string;
  /** The secret before a rotation: destinations keep accepting it until every MTA has restarted. */
  readonly previousSecret?: string;
}

const MIN_SECRET_BYTES = 32;

function fail(message: string): never {
  throw new VolleyError('EDRAINSECRET', message);
}

/** Parses and checks the stored JSON; the message never contains a value. */
export function parseDrainSecret(text: string, secretId: string): DrainSecret {
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
  return { secret: d.secret as string, previousSecret: d.previous_secret as string | undefined };
}

/** Writes the secret file (and `<file>.previous` during a rotation, removed otherwise). */
export async function installDrainSecret(s: DrainSecret, secretFile: string, owner?: FileOwner): Promise<void> {
  // The previous one first: a start between the writes accepts both, never only the new one while sources still sign with the old.
  if (s.previousSecret) await writePrivateFile(previousSecretFile(secretFile), s.previousSecret, owner);
  await writePrivateFile(secretFile, s.secret, owner);
  if (!s.previousSecret) await rm(previousSecretFile(secretFile), { force: true });
}

/** `volley drain-secret fetch`: the file from the secret, or the one on disk when AWS is unreachable. */
export async function fetchDrainSecret(
  client: SecretsManagerClient,
  secretId: string,
  secretFile: string,
  owner: FileOwner | undefined,
  warn: (message: string) => void,
): Promise<'written' | 'kept'> {
  return withFallback(
    // readSecretString fails with the proxy link's "unreachable" code when AWS does not answer: the fallback keys on it.
    async () => installDrainSecret(parseDrainSecret(await readSecretString(client, secretId), secretId), secretFile, owner),
    () => checkSecretFile(secretFile),
    [secretFile],
    warn,
  );
}
