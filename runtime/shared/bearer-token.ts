// Bearer tokens as the config names them: { name, sha256 } pairs (the hash
// from `volley config hash-token`), so the config in git holds no secret. The
// HTTP API and the MTA admin port check a request's token the same way.
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { sha256Hex } from './password';

export interface NamedToken {
  name: string;
  sha256: string;
}

/** The name of the configured token the request's `Authorization: Bearer` carries; undefined when none matches. */
export function bearerTokenName(req: IncomingMessage, tokens: readonly NamedToken[]): string | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return undefined;
  const digest = Buffer.from(sha256Hex(m[1]), 'hex');
  // Every token is compared (no early exit): the time taken says nothing about which matched.
  let name: string | undefined;
  for (const t of tokens) {
    const want = Buffer.from(t.sha256, 'hex');
    if (want.length === digest.length && timingSafeEqual(want, digest)) name ??= t.name;
  }
  return name;
}
