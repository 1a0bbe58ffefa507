// DKIM signing of outbound mail (RFC 6376, rsa-sha256; RFC 8463, ed25519-sha256),
// relaxed/relaxed canonicalization.
//
// Own code on node:crypto rather than a library: nodemailer's DKIM (nodemailer/lib/dkim)
// signs rsa-sha256 only, works as a stream and hands the PEM string to crypto on every
// message (a key parse per message); mailauth signs both algorithms but is not a
// dependency of this project and adding it is not ours to decide here. Signing is
// canonicalization plus two hashes, so it lives here, with keys parsed once into
// KeyObjects when the signer is built.
//
// The MTA builds a new DkimSigner on every config refresh: the constructor reads and
// checks every key, and throws (EDKIMKEY) so a bad key fails the refresh and the old
// signer stays in use.

import { createHash, createPrivateKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { domainToASCII } from 'node:url';
import type { DkimKeyConfig } from '../../../shared/config/types';
import { VolleyError } from '../../../shared/errors';

/** Header fields signed (when present) unless the key configures its own list. */
export const DEFAULT_SIGNED_HEADERS: readonly string[] = [
  'from',
  'to',
  'cc',
  'subject',
  'date',
  'message-id',
  'reply-to',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
  'list-unsubscribe',
  'list-unsubscribe-post',
  'in-reply-to',
  'references',
];

export interface DkimSignResult {
  message: Buffer;
  /** The d= of the (first) signature added; undefined when the message was not signed. */
  domain?: string;
  /** The s= of the (first) signature added. */
  selector?: string;
}

interface LoadedKey {
  domain: string;
  selector: string;
  algorithm: 'rsa-sha256' | 'ed25519-sha256';
  key: KeyObject;
  /** Lowercase header names to sign when present; always contains 'from'. */
  headers: readonly string[];
}

interface HeaderField {
  /** Lowercased field name. */
  name: string;
  /** Raw field text (latin1, one char per byte) without its final CRLF, folding kept. */
  raw: string;
}

export class DkimSigner {
  private readonly byDomain = new Map<string, LoadedKey[]>();
  private readonly now: () => number;

  /**
   * Reads and parses every key now. Throws VolleyError EDKIMKEY naming the domain,
   * selector and file for a missing, unreadable or wrong-type key.
   * `opts.now` (ms since epoch) is for tests.
   */
  constructor(keys: readonly DkimKeyConfig[], opts: { now?: () => number } = {}) {
    this.now = opts.now ?? Date.now;
    for (const k of keys) {
      const loaded = loadKey(k);
      const list = this.byDomain.get(loaded.domain);
      if (list) list.push(loaded);
      else this.byDomain.set(loaded.domain, [loaded]);
    }
  }

  /** Number of configured keys (for logging). */
  get size(): number {
    let n = 0;
    for (const l of this.byDomain.values()) n += l.length;
    return n;
  }

  /**
   * Signs `message` (CRLF line ends, as spooled) with every key of the domain of its
   * From: header, or of the closest parent domain that has keys. Returns the message
   * with the DKIM-Signature field(s) prepended, or unchanged (domain undefined) when no
   * key matches or the message has no usable From:.
   */
  sign(message: Buffer): DkimSignResult {
    if (this.byDomain.size === 0) return { message };
    const split = splitMessage(message);
    const fields = parseHeaderFields(split.head);
    const fromDomain = authorDomain(fields);
    if (fromDomain === undefined) return { message };
    const keys = this.keysFor(fromDomain);
    if (!keys) return { message };

    const bh = createHash('sha256').update(canonicalizeBodyRelaxed(message, split.bodyStart)).digest('base64');
    const t = Math.floor(this.now() / 1000);
    const sigs: string[] = [];
    for (const key of keys) sigs.push(signatureField(key, fields, bh, t));
    return {
      message: Buffer.concat([Buffer.from(sigs.join(''), 'latin1'), message]),
      domain: keys[0].domain,
      selector: keys[0].selector,
    };
  }

  private keysFor(domain: string): LoadedKey[] | undefined {
    let d = domain;
    for (;;) {
      const keys = this.byDomain.get(d);
      if (keys) return keys;
      const dot = d.indexOf('.');
      if (dot < 0) return undefined;
      d = d.slice(dot + 1);
    }
  }
}

function loadKey(k: DkimKeyConfig): LoadedKey {
  const where = `DKIM key for ${k.domain} selector ${k.selector} (${k.privateKeyFile})`;
  let pem: Buffer;
  try {
    pem = readFileSync(k.privateKeyFile);
  } catch (err) {
    throw new VolleyError('EDKIMKEY', `${where}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new VolleyError('EDKIMKEY', `${where}: not a private key: ${(err as Error).message}`, { cause: err });
  }
  const type = key.asymmetricKeyType;
  if (k.algorithm === 'rsa-sha256') {
    if (type !== 'rsa') throw new VolleyError('EDKIMKEY', `${where}: algorithm rsa-sha256 needs an RSA key, the file holds ${type}`);
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    // RFC 8301: verifiers must not accept keys under 1024 bits.
    if (bits < 1024) throw new VolleyError('EDKIMKEY', `${where}: RSA key of ${bits} bits, at least 1024 (better 2048) needed`);
  } else if (k.algorithm === 'ed25519-sha256') {
    if (type !== 'ed25519') throw new VolleyError('EDKIMKEY', `${where}: algorithm ed25519-sha256 needs an Ed25519 key, the file holds ${type}`);
  } else {
    throw new VolleyError('EDKIMKEY', `${where}: unknown algorithm ${String(k.algorithm)}`);
  }
  const domain = normalizeDomain(k.domain);
  if (!domain || /[\s;=]/.test(domain) || !/^[A-Za-z0-9._-]+$/.test(k.selector)) {
    throw new VolleyError('EDKIMKEY', `${where}: invalid domain or selector`);
  }
  const headers = (k.headers ?? DEFAULT_SIGNED_HEADERS)
    .map((h) => h.trim().toLowerCase())
    // A signature never signs DKIM-Signature fields (its own included) through h=.
    .filter((h) => h !== '' && h !== 'dkim-signature' && /^[\x21-\x39\x3b-\x7e]+$/.test(h));
  if (!headers.includes('from')) headers.unshift('from');
  return { domain, selector: k.selector, algorithm: k.algorithm, key, headers: [...new Set(headers)] };
}

/** Lowercase A-label form without a trailing dot; '' when not convertible. */
function normalizeDomain(d: string): string {
  let s = d.trim().toLowerCase();
  if (s.endsWith('.')) s = s.slice(0, -1);
  if (/[^\x00-\x7f]/.test(s)) s = domainToASCII(s);
  return s;
}

/** Header section (latin1 text, through the last field's line end) and where the body starts. */
function splitMessage(message: Buffer): { head: string; bodyStart: number } {
  if (message[0] === 0x0a) return { head: '', bodyStart: 1 };
  if (message[0] === 0x0d && message[1] === 0x0a) return { head: '', bodyStart: 2 };
  const i = message.indexOf('\r\n\r\n');
  // Bare LF line ends are not what the spool holds; handled so the signature stays
  // valid once the transport makes them CRLF. The earlier empty line wins.
  const j = (i >= 0 ? message.subarray(0, i) : message).indexOf('\n\n');
  if (i >= 0 && j < 0) return { head: message.toString('latin1', 0, i + 2), bodyStart: i + 4 };
  if (j >= 0) return { head: message.toString('latin1', 0, j + 1), bodyStart: j + 2 };
  return { head: message.toString('latin1'), bodyStart: message.length };
}

function parseHeaderFields(head: string): HeaderField[] {
  const fields: HeaderField[] = [];
  const lines = head.split(/\r?\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  for (const line of lines) {
    const c = line.charCodeAt(0);
    if ((c === 0x20 || c === 0x09) && fields.length > 0) {
      fields[fields.length - 1].raw += '\r\n' + line;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue; // not a header field (mbox "From " line or garbage): never signed
    fields.push({ name: line.slice(0, colon).trimEnd().toLowerCase(), raw: line });
  }
  return fields;
}

/** RFC 6376 3.4.2 relaxed header canonicalization of one field, without the final CRLF. */
function canonicalizeHeaderRelaxed(raw: string): string {
  const colon = raw.indexOf(':');
  const name = raw.slice(0, colon).trimEnd().toLowerCase();
  const value = raw
    .slice(colon + 1)
    .replace(/\r?\n/g, '')
    .replace(/[ \t]+/g, ' ')
    .trim();
  return `${name}:${value}`;
}

/**
 * RFC 6376 3.4.4 relaxed body canonicalization, one pass over the bytes: whitespace
 * runs become one SP, whitespace at line ends goes, empty lines at the end go, a
 * non-empty body ends in CRLF; an empty body stays empty. Bare LF counts as CRLF.
 */
export function canonicalizeBodyRelaxed(message: Buffer, start = 0): Buffer {
  const n = message.length;
  const out = Buffer.allocUnsafe(n - start + 2);
  let o = 0;
  let wsp = false;
  for (let i = start; i < n; i++) {
    const c = message[i];
    if (c === 0x20 || c === 0x09) {
      wsp = true; // emitted as one SP only if content follows on the line
    } else if (c === 0x0a || (c === 0x0d && i + 1 < n && message[i + 1] === 0x0a)) {
      if (c === 0x0d) i++;
      wsp = false;
      out[o++] = 0x0d;
      out[o++] = 0x0a;
    } else {
      if (wsp) {
        out[o++] = 0x20;
        wsp = false;
      }
      out[o++] = c;
    }
  }
  if (o > 0 && !(out[o - 2] === 0x0d && out[o - 1] === 0x0a)) {
    out[o++] = 0x0d;
    out[o++] = 0x0a;
  }
  while (o >= 4 && out[o - 4] === 0x0d && out[o - 3] === 0x0a && out[o - 2] === 0x0d && out[o - 1] === 0x0a) o -= 2;
  if (o === 2) o = 0; // nothing but empty lines
  return out.subarray(0, o);
}

/** Domain of the (first) From: address, lowercased A-label; undefined when none. */
function authorDomain(fields: HeaderField[]): string | undefined {
  const from = fields.find((f) => f.name === 'from');
  if (!from) return undefined;
  let value = from.raw.slice(from.raw.indexOf(':') + 1).replace(/\r?\n/g, '');
  // Header bytes may be UTF-8 (RFC 6532); decode so an U-label domain converts.
  if (/[^\x00-\x7f]/.test(value)) value = Buffer.from(value, 'latin1').toString('utf8');
  const addr = firstAddress(value);
  if (!addr) return undefined;
  const at = addr.lastIndexOf('@');
  if (at < 0) return undefined;
  const domain = normalizeDomain(addr.slice(at + 1));
  return domain && !domain.startsWith('[') ? domain : undefined;
}

/** The first mailbox's addr-spec: quoted strings and comments skipped, <...> preferred. */
function firstAddress(value: string): string | undefined {
  let plain = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (ch === '\\' && (quoted || depth > 0)) {
      i++;
      continue;
    }
    if (quoted) {
      if (ch === '"') quoted = false;
      continue;
    }
    if (depth > 0) {
      if (ch === '(') depth++;
      else if (ch === ')') depth--;
      continue;
    }
    if (ch === '"') quoted = true;
    else if (ch === '(') depth = 1;
    else plain += ch;
  }
  const lt = plain.indexOf('<');
  if (lt >= 0) {
    const gt = plain.indexOf('>', lt);
    return plain.slice(lt + 1, gt < 0 ? undefined : gt).trim() || undefined;
  }
  // Group syntax ("list: a@b, c@d;") or a bare address list: take the first address.
  const colon = plain.indexOf(':');
  const first = plain.slice(colon + 1).split(/[,;]/)[0].trim();
  return first || undefined;
}

/** Builds one complete DKIM-Signature field (with final CRLF). */
function signatureField(key: LoadedKey, fields: HeaderField[], bh: string, t: number): string {
  // Each name in h= signs the last not-yet-used instance of that field (RFC 6376
  // 5.4.2). Present fields are signed as many times as they occur; 'from' once more
  // (oversigning) so a From: added in transit breaks the signature.
  const counts = new Map<string, number>();
  for (const f of fields) counts.set(f.name, (counts.get(f.name) ?? 0) + 1);
  const names: string[] = [];
  for (const h of key.headers) {
    const c = counts.get(h) ?? 0;
    for (let i = 0; i < c; i++) names.push(h);
  }
  names.push('from');

  const used = new Map<string, number>();
  let data = '';
  for (const h of names) {
    const skip = used.get(h) ?? 0;
    used.set(h, skip + 1);
    const f = nthFromBottom(fields, h, skip);
    if (f) data += canonicalizeHeaderRelaxed(f.raw) + '\r\n';
  }

  const head =
    `DKIM-Signature: v=1; a=${key.algorithm}; c=relaxed/relaxed; d=${key.domain};\r\n` +
    ` s=${key.selector}; t=${t};\r\n` +
    ` h=${names.join(':')};\r\n` +
    ` bh=${bh};\r\n` +
    ` b=`;
  // The signature covers the field itself with b= empty and no final CRLF.
  data += canonicalizeHeaderRelaxed(head);
  const input = Buffer.from(data, 'latin1');
  const b =
    key.algorithm === 'rsa-sha256'
      ? cryptoSign('sha256', input, key.key)
      : // RFC 8463: Ed25519 (pure) over the SHA-256 of the canonicalized header data.
        cryptoSign(null, createHash('sha256').update(input).digest(), key.key);
  return head + foldBase64(b.toString('base64')) + '\r\n';
}

function nthFromBottom(fields: HeaderField[], name: string, skip: number): HeaderField | undefined {
  for (let i = fields.length - 1; i >= 0; i--) {
    if (fields[i].name === name) {
      if (skip === 0) return fields[i];
      skip--;
    }
  }
  return undefined;
}

/** Folds a base64 value into lines of at most 76 chars (the whitespace is ignored by verifiers). */
function foldBase64(s: string): string {
  if (s.length <= 70) return s;
  const parts: string[] = [];
  for (let i = 0; i < s.length; i += 76) parts.push(s.slice(i, i + 76));
  return parts.join('\r\n ');
}
