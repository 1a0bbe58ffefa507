// VERP return paths: MAIL FROM <prefix>+<token>@<bounce domain>, the token
// naming the message and the recipient under a truncated HMAC, so a bounce
// that comes back later says exactly what bounced, and a forged one is not
// believed. The delivery engine makes the address; the inbound listener
// (same daemon) reads it back.

import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { VolleyError } from '../../../shared/errors';
import type { InboundConfig } from '../../../shared/config/types';

// Crockford base32, lower case: a message id already is Crockford base32, and
// base32 (unlike base64url) survives an MTA that folds the local part to
// lower case when it writes the bounce, which real ones do.
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const VALUE = new Map([...ALPHABET].map((c, i) => [c, i]));
/** A Volley message id (runtime/mta/message-id.ts): 26 Crockford base32 characters. */
const VOLLEY_ID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const ID_CHARS = 26;
/** 80 bits of HMAC-SHA256: 16 base32 characters. */
const MAC_BYTES = 10;
const MAC_CHARS = 16;
export const MIN_SECRET_BYTES = 32;

export type VerpSettings = NonNullable<InboundConfig['verp']>;

/** What a VERP address said: a message and recipient we sent (HMAC checked), or a token that is not ours. */
export type VerpResult = { ok: true; messageId: string; recipient: string } | { ok: false; reason: 'forged' | 'malformed' };

/** Reads the HMAC key: the file's bytes less one trailing line end (an `openssl rand -hex 32 > file` key works as written). */
export function loadVerpSecret(file: string): Buffer {
  let key: Buffer;
  try {
    key = readFileSync(file);
  } catch (err) {
    throw new VolleyError('EVERPSECRET', `inbound.verp.secret_file ${file}: ${(err as Error).message}`, { cause: err });
  }
  let end = key.length;
  if (end > 0 && key[end - 1] === 0x0a) end--;
  if (end > 0 && key[end - 1] === 0x0d) end--;
  key = key.subarray(0, end);
  if (key.length < MIN_SECRET_BYTES) throw new VolleyError('EVERPSECRET', `inbound.verp.secret_file ${file}: ${key.length} bytes, a VERP key needs at least ${MIN_SECRET_BYTES}`);
  return key;
}

export function base32(bytes: Buffer): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(acc >> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

/** Undefined when `text` is not canonical base32 (a foreign character, or stray trailing bits). */
export function unbase32(text: string): Buffer | undefined {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const c of text) {
    const v = VALUE.get(c);
    if (v === undefined) return undefined;
    acc = (acc << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
    acc &= (1 << bits) - 1;
  }
  // Padding bits must be zero and fewer than a whole character: one string per byte sequence.
  if (bits >= 5 || acc !== 0) return undefined;
  return Buffer.from(out);
}

/**
 * Makes and reads VERP addresses for one key. The token is
 * `<message id><base32 of the recipient><80-bit HMAC>`, all lower-case
 * base32, so it needs no separators: the id is fixed-length, the MAC too.
 */
export class Verp {
  private readonly prefix: string;
  private readonly domain: string;
  private readonly pools?: ReadonlySet<string>;

  constructor(
    settings: VerpSettings,
    private readonly secret: Buffer,
  ) {
    if (secret.length < MIN_SECRET_BYTES) throw new VolleyError('EVERPSECRET', `a VERP key needs at least ${MIN_SECRET_BYTES} bytes`);
    this.prefix = settings.prefix.toLowerCase();
    this.domain = settings.domain.toLowerCase();
    this.pools = settings.pools && new Set(settings.pools);
  }

  /** Whether mail of this pool goes out VERP'd (no pool list: every pool, and mail with none). */
  covers(pool: string | undefined): boolean {
    return !this.pools || (pool !== undefined && this.pools.has(pool));
  }

  /** Whether a token can name this message (a Volley id); other messages keep their sender. */
  names(messageId: string): boolean {
    return VOLLEY_ID.test(messageId);
  }

  /**
   * The return path for one recipient of one message, or undefined when the
   * id is not a Volley id (nothing compact to put in the token): that
   * message keeps its sender, and bounces match it by its X-Volley-Id header.
   */
  address(messageId: string, recipient: string): string | undefined {
    if (!VOLLEY_ID.test(messageId)) return undefined;
    const rcpt = base32(Buffer.from(recipient, 'utf8'));
    return `${this.prefix}+${messageId.toLowerCase()}${rcpt}${this.mac(messageId, recipient)}@${this.domain}`;
  }

  /** Undefined: not one of our VERP addresses at all (another address of the bounce domain). */
  read(address: string): VerpResult | undefined {
    const at = address.lastIndexOf('@');
    if (at < 0 || address.slice(at + 1).toLowerCase() !== this.domain) return undefined;
    const local = address.slice(0, at).toLowerCase();
    if (!local.startsWith(`${this.prefix}+`)) return undefined;
    const token = local.slice(this.prefix.length + 1);
    if (token.length < ID_CHARS + MAC_CHARS) return { ok: false, reason: 'malformed' };
    const messageId = token.slice(0, ID_CHARS).toUpperCase();
    const rcptBytes = unbase32(token.slice(ID_CHARS, token.length - MAC_CHARS));
    if (!VOLLEY_ID.test(messageId) || !rcptBytes) return { ok: false, reason: 'malformed' };
    const recipient = rcptBytes.toString('utf8');
    // A recipient that is not valid UTF-8 cannot have been ours.
    if (!Buffer.from(recipient, 'utf8').equals(rcptBytes) || !recipient.includes('@')) return { ok: false, reason: 'malformed' };
    const given = Buffer.from(token.slice(token.length - MAC_CHARS));
    const expected = Buffer.from(this.mac(messageId, recipient));
    if (!timingSafeEqual(given, expected)) return { ok: false, reason: 'forged' };
    return { ok: true, messageId, recipient };
  }

  private mac(messageId: string, recipient: string): string {
    const h = createHmac('sha256', this.secret).update(`volley-verp-1\0${messageId}\0${recipient}`).digest();
    return base32(h.subarray(0, MAC_BYTES));
  }
}

/** The engine's VERP, from config: undefined when inbound.verp is not set. Throws (EVERPSECRET) when its key cannot be read. */
export function verpFromConfig(inbound: InboundConfig | undefined): Verp | undefined {
  const settings = inbound?.verp;
  return settings && new Verp(settings, loadVerpSecret(settings.secretFile));
}
