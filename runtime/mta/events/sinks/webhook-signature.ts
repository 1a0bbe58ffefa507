// Standard Webhooks signing (https://www.standardwebhooks.com): the secrets a
// webhook sink signs with, the batch id that names a batch across its retries,
// and the three headers a receiver checks. Kept apart from the sink so the
// receiver's side of the contract can be read (and tested) on its own.

import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { VolleyError } from '../../../shared/errors';

/** The Standard Webhooks secret prefix: `whsec_<base64 key>`. */
export const SECRET_PREFIX = 'whsec_';
/** The spec asks for keys of 24 to 64 bytes; a shorter one is a typo or a placeholder, not a secret. */
const MIN_KEY_BYTES = 24;
const MAX_KEY_BYTES = 64;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * Decodes one `whsec_<base64>` secret. `source` names where it came from, for
 * the error: a sink must not start with a secret the receiver cannot share.
 */
export function parseSecret(text: string, source: string): Buffer {
  const trimmed = text.trim();
  if (!trimmed.startsWith(SECRET_PREFIX)) {
    throw new VolleyError('EWEBHOOKSECRET', `${source}: a webhook secret is "${SECRET_PREFIX}" followed by base64 (Standard Webhooks)`);
  }
  const b64 = trimmed.slice(SECRET_PREFIX.length);
  if (!BASE64.test(b64) || b64.length % 4 !== 0) throw new VolleyError('EWEBHOOKSECRET', `${source}: the part after "${SECRET_PREFIX}" is not base64`);
  const key = Buffer.from(b64, 'base64');
  if (key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES) {
    throw new VolleyError('EWEBHOOKSECRET', `${source}: the key is ${key.length} bytes; Standard Webhooks keys are ${MIN_KEY_BYTES} to ${MAX_KEY_BYTES}`);
  }
  return key;
}

/** Reads every secret file; every key signs, so a new one can be added before the old one is removed. */
export function readSecretFiles(files: readonly string[]): Buffer[] {
  if (files.length === 0) throw new VolleyError('EWEBHOOKSECRET', 'a webhook sink needs at least one secret file');
  return files.map((file) => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new VolleyError('EWEBHOOKSECRET', `cannot read webhook secret file ${file}: ${(err as Error).message}`, { cause: err });
    }
    return parseSecret(text, file);
  });
}

/**
 * The `webhook-id` of a batch: the same on every retry of it (a receiver drops
 * a replay by it), different for different batches. Derived from the batch's
 * first and last event ids and its length, which name a run of the log; the
 * hash keeps the header short whatever the ids look like.
 */
export function batchId(eventIds: readonly string[]): string {
  const first = eventIds[0] ?? '';
  const last = eventIds[eventIds.length - 1] ?? '';
  const digest = createHash('sha256').update(`${first}\n${last}\n${eventIds.length}`).digest('base64url');
  return `batch_${digest.slice(0, 27)}`;
}

/** `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` per key, space separated. */
export function signatureHeader(keys: readonly Buffer[], id: string, timestampSec: number, body: Buffer): string {
  const prefix = Buffer.from(`${id}.${timestampSec}.`);
  return keys.map((key) => `v1,${createHmac('sha256', key).update(prefix).update(body).digest('base64')}`).join(' ');
}

/**
 * The three Standard Webhooks headers for one attempt. The timestamp is the
 * attempt's own (a retry an hour later must not look like a replay); the id is
 * the batch's. `body` is the JSON before any content-encoding: a receiver
 * verifies what it parses.
 */
export function signHeaders(keys: readonly Buffer[], id: string, nowMs: number, body: Buffer): Record<string, string> {
  const timestamp = Math.floor(nowMs / 1000);
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signatureHeader(keys, id, timestamp, body),
  };
}
