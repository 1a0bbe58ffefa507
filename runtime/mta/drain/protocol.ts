// The drain wire protocol (issue 17, /work/notes/drain-contract.md): how a
// draining node packs queued messages into one HTTPS request, how that request
// is signed with the fleet's shared drain secret, and what the destination
// answers. Both sides import this one file so they cannot disagree.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { VolleyError } from '../../shared/errors';

export const DRAIN_PATH_MESSAGES = '/drain/v1/messages';
export const DRAIN_PATH_HAVE = '/drain/v1/have';
export const DRAIN_CONTENT_TYPE = 'application/x-volley-drain';
export const HEADER_NODE = 'x-volley-drain-node';
export const HEADER_TIME = 'x-volley-drain-time';
export const HEADER_SIGNATURE = 'x-volley-drain-signature';
/** A signed request older or newer than this is refused, so a captured one cannot be replayed later. */
export const CLOCK_WINDOW_S = 5 * 60;
/**
 * The longest `--request-timeout` a source may use (silence on the connection
 * before it gives a batch up for that destination's next turn). The endpoint
 * closes a connection only after longer silence (DRAIN_IDLE_CLOSE_MS), so a
 * source waiting on a slow store has always given up first: a destination
 * that cut the answer instead would get the batch again, a wasted round.
 */
export const MAX_REQUEST_TIMEOUT_MS = 9 * 60_000;
/**
 * The endpoint's close of a connection with no byte either way this long: a
 * client that sends headers and stalls must not hold its connection, and what
 * it sent, for ever; a minute above MAX_REQUEST_TIMEOUT_MS so it never ends a
 * request a source is still waiting on.
 */
export const DRAIN_IDLE_CLOSE_MS = MAX_REQUEST_TIMEOUT_MS + 60_000;
/** A record's header JSON is small; a larger length is corruption, not a message. */
export const MAX_HEADER_BYTES = 64 * 1024;

/** One queued message as the source hands it over: what the destination needs to schedule it exactly as the source would have. */
export interface DrainMessageHeader {
  /** Fleet-unique (runtime/mta/message-id.ts): the destination's dedupe key. */
  id: string;
  from: string;
  /** Only the recipients still pending at the source. */
  to: string[];
  /** First received at the original node (ms). */
  received: number;
  /** received + the SOURCE's delivery.max_lifetime (ms): expiry must not reset on a drain. */
  expires: number;
  /** Next retry (ms); absent means now. */
  next?: number;
  attempts: number;
  pool?: string;
  vmta?: string;
  meta?: Record<string, string>;
  client?: { ip?: string; helo?: string; user?: string };
  via_original: 'smtp' | 'http' | 'drain';
  /** Size of the message bytes that follow the header. */
  size: number;
}

export interface DrainRecord {
  header: DrainMessageHeader;
  body: Buffer;
}

/** A record whose framing was sound but whose header is not a valid DrainMessageHeader: refused alone, the batch goes on. */
export interface DrainBadRecord {
  /** The id if the header had a usable one, so the answer can name it. */
  id: string;
  error: string;
}

export type DrainStatus = 'queued' | 'duplicate' | 'refused';

export interface DrainResult {
  id: string;
  status: DrainStatus;
  reason?: string;
}

/** 200 answer to POST /drain/v1/messages: one result per record, in request order. */
export interface DrainResponse {
  results: DrainResult[];
}

export interface HaveRequest {
  ids: string[];
  /**
   * Answer for the ids it can, naming in `unknown` those it cannot say yet
   * (a store unanswered): without it (an earlier source) such a request is
   * answered 500 whole, since that source would read a missing id as "not here".
   */
  partial?: boolean;
}

export interface HaveResponse {
  have: string[];
  /** Only when the request was `partial`: ids that may yet be stored here; ask again. */
  unknown?: string[];
}

/** Whole-request answers other than 200, and what the source does about each. */
export const DRAIN_HTTP_STATUS = {
  malformed: 400,
  unauthorized: 401,
  forbidden: 403,
  self: 409,
  tooLarge: 413,
  /** Some message may have been stored, some not: send the batch here again (never elsewhere). */
  unknown: 500,
  unavailable: 503,
} as const;

// ---------- batch body ----------

export function encodeRecord(header: DrainMessageHeader, body: Buffer): Buffer[] {
  const json = Buffer.from(JSON.stringify(header));
  const lens = Buffer.allocUnsafe(4);
  lens.writeUInt32BE(json.length, 0);
  const blen = Buffer.allocUnsafe(4);
  blen.writeUInt32BE(body.length, 0);
  return [lens, json, blen, body];
}

export function encodeBatch(records: readonly DrainRecord[]): Buffer {
  return Buffer.concat(records.flatMap((r) => encodeRecord(r.header, r.body)));
}

/**
 * Splits a batch body into records. A framing fault (truncated, a length past
 * the end or past MAX_HEADER_BYTES) throws: nothing after it can be trusted,
 * so the whole request is refused (400) and nothing is queued. A record whose
 * header JSON is not a valid DrainMessageHeader comes back as a DrainBadRecord
 * so only that message is refused.
 */
export function decodeBatch(buf: Buffer): Array<DrainRecord | DrainBadRecord> {
  const out: Array<DrainRecord | DrainBadRecord> = [];
  let at = 0;
  while (at < buf.length) {
    const index = out.length;
    if (buf.length - at < 4) throw new VolleyError('drain_truncated', `drain batch: record ${index}: truncated header length`);
    const hlen = buf.readUInt32BE(at);
    at += 4;
    if (hlen > MAX_HEADER_BYTES) throw new VolleyError('drain_oversize', `drain batch: record ${index}: header length ${hlen} exceeds ${MAX_HEADER_BYTES}`);
    if (buf.length - at < hlen) throw new VolleyError('drain_truncated', `drain batch: record ${index}: header truncated (${buf.length - at} of ${hlen} bytes)`);
    const hjson = buf.subarray(at, at + hlen);
    at += hlen;
    if (buf.length - at < 4) throw new VolleyError('drain_truncated', `drain batch: record ${index}: truncated body length`);
    const blen = buf.readUInt32BE(at);
    at += 4;
    if (buf.length - at < blen) throw new VolleyError('drain_oversize', `drain batch: record ${index}: body length ${blen} exceeds the ${buf.length - at} bytes left`);
    const body = buf.subarray(at, at + blen);
    at += blen;
    let parsed: unknown;
    try {
      parsed = JSON.parse(hjson.toString('utf8'));
    } catch {
      out.push({ id: '', error: 'header is not JSON' });
      continue;
    }
    const checked = checkHeader(parsed, blen);
    out.push(typeof checked === 'string' ? { id: idOf(parsed), error: checked } : { header: checked, body });
  }
  return out;
}

export function isBadRecord(r: DrainRecord | DrainBadRecord): r is DrainBadRecord {
  return 'error' in r;
}

function idOf(v: unknown): string {
  return typeof v === 'object' && v !== null && typeof (v as { id?: unknown }).id === 'string' ? (v as { id: string }).id : '';
}

const ID_RE = /^[0-9A-Za-z._-]{1,64}$/;
const isMs = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isOptString = (v: unknown): boolean => v === undefined || typeof v === 'string';

/** The header as a DrainMessageHeader, or why not (a per-message refusal reason). */
export function checkHeader(v: unknown, bodyLength: number): DrainMessageHeader | string {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'header is not an object';
  const h = v as Record<string, unknown>;
  if (typeof h.id !== 'string' || !ID_RE.test(h.id)) return 'id missing or not a message id';
  if (typeof h.from !== 'string') return 'from missing';
  if (!Array.isArray(h.to) || h.to.length === 0 || !h.to.every((t) => typeof t === 'string' && t.length > 0)) return 'to must list the pending recipients';
  if (!isMs(h.received)) return 'received must be a time in ms';
  if (!isMs(h.expires)) return 'expires must be a time in ms';
  if (h.next !== undefined && !isMs(h.next)) return 'next must be a time in ms';
  if (!isMs(h.attempts)) return 'attempts must be a count';
  if (!isOptString(h.pool) || !isOptString(h.vmta)) return 'pool/vmta must be strings';
  if (h.meta !== undefined && (typeof h.meta !== 'object' || h.meta === null || Array.isArray(h.meta) || !Object.values(h.meta).every((x) => typeof x === 'string'))) return 'meta must map strings to strings';
  if (h.client !== undefined) {
    const c = h.client as Record<string, unknown>;
    if (typeof c !== 'object' || c === null || !isOptString(c.ip) || !isOptString(c.helo) || !isOptString(c.user)) return 'client must be { ip?, helo?, user? }';
  }
  if (h.via_original !== 'smtp' && h.via_original !== 'http' && h.via_original !== 'drain') return 'via_original must be smtp, http or drain';
  if (h.size !== bodyLength) return `size ${String(h.size)} does not match the ${bodyLength} message bytes`;
  return {
    id: h.id,
    from: h.from,
    to: h.to as string[],
    received: h.received,
    expires: h.expires,
    next: h.next as number | undefined,
    attempts: h.attempts,
    pool: h.pool as string | undefined,
    vmta: h.vmta as string | undefined,
    meta: h.meta as Record<string, string> | undefined,
    client: h.client as DrainMessageHeader['client'],
    via_original: h.via_original,
    size: h.size,
  };
}

// ---------- signature ----------

function signatureHex(secret: Buffer, time: string, node: string, body: Buffer): string {
  const digest = createHash('sha256').update(body).digest('hex');
  return createHmac('sha256', secret).update(`v1\n${time}\n${node}\n${digest}`).digest('hex');
}

/** The three headers a signed drain request carries. */
export function signRequest(secret: Buffer, node: string, body: Buffer, nowMs = Date.now()): Record<string, string> {
  const time = String(Math.floor(nowMs / 1000));
  return { [HEADER_NODE]: node, [HEADER_TIME]: time, [HEADER_SIGNATURE]: `v1=${signatureHex(secret, time, node, body)}` };
}

export type VerifyResult = { ok: true; node: string } | { ok: false; reason: 'missing' | 'stale' | 'bad_signature' };

/**
 * Why a request's headers alone show it is not signed now (absent or
 * malformed, or a time outside the clock window); undefined when they may
 * carry a valid signature. The endpoint asks this before reading the body,
 * so an unsigned request is refused without max_batch_bytes held for it.
 */
export function unsignedReason(headers: Record<string, string | string[] | undefined>, nowMs = Date.now()): 'missing' | 'stale' | undefined {
  const one = (k: string): string | undefined => {
    const v = headers[k];
    return Array.isArray(v) ? v[0] : v;
  };
  const time = one(HEADER_TIME);
  if (!one(HEADER_NODE) || !time || !one(HEADER_SIGNATURE) || !/^\d{1,12}$/.test(time)) return 'missing';
  if (Math.abs(nowMs / 1000 - Number(time)) > CLOCK_WINDOW_S) return 'stale';
  return undefined;
}

/**
 * Checks a request's signature against the current secret and, during a
 * rotation, the previous one. Any `v1=` value may match any secret, so a
 * source still on the old secret and one already on the new both pass.
 */
export function verifyRequest(
  headers: Record<string, string | string[] | undefined>,
  body: Buffer,
  secrets: readonly Buffer[],
  nowMs = Date.now(),
): VerifyResult {
  const one = (k: string): string | undefined => {
    const v = headers[k];
    return Array.isArray(v) ? v[0] : v;
  };
  const unsigned = unsignedReason(headers, nowMs);
  if (unsigned) return { ok: false, reason: unsigned };
  // All three are present: unsignedReason said so.
  const node = one(HEADER_NODE)!;
  const time = one(HEADER_TIME)!;
  const sig = one(HEADER_SIGNATURE)!;
  const given = sig
    .split(/\s+/)
    .filter((s) => s.startsWith('v1=') && /^[0-9a-f]{64}$/.test(s.slice(3)))
    .map((s) => Buffer.from(s.slice(3), 'hex'));
  if (given.length === 0) return { ok: false, reason: 'missing' };
  for (const secret of secrets) {
    const expected = Buffer.from(signatureHex(secret, time, node, body), 'hex');
    for (const g of given) if (g.length === expected.length && timingSafeEqual(g, expected)) return { ok: true, node };
  }
  return { ok: false, reason: 'bad_signature' };
}
