// AWS Signature Version 4, checked the way S3 checks it: the canonical request,
// the string to sign and the signing key rebuilt from the wire request and the
// secret the server holds for the access key, then compared with the
// signature the client sent. Written from the spec
// (docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html and
// AmazonS3/latest/API/sig-v4-header-based-auth.html), not from the SDK's
// signer, so a test passes only if the SDK and the spec agree.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export interface Credentials {
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

/** What the server needs of a request to check its signature. */
export interface WireRequest {
  readonly method: string;
  /** The request target as sent: raw path and query, still percent-encoded. */
  readonly url: string;
  /** Header name (any case) -> value(s), as Node's IncomingMessage gives them. */
  readonly headers: Record<string, string | string[] | undefined>;
}

export interface Verified {
  readonly accessKeyId: string;
  readonly date: string;
  readonly scope: string;
  readonly signingKey: Buffer;
  readonly signature: string;
  readonly region: string;
  readonly service: string;
}

/** A refused request: the S3 error code and its message. */
export class SigV4Error extends Error {
  constructor(
    readonly s3Code: 'AccessDenied' | 'InvalidAccessKeyId' | 'SignatureDoesNotMatch' | 'RequestTimeTooSkewed' | 'AuthorizationHeaderMalformed' | 'InvalidToken',
    message: string,
    readonly status = 403,
  ) {
    super(message);
  }
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** RFC 3986 percent-encoding: everything but A-Z a-z 0-9 - _ . ~ (what SigV4 calls UriEncode). */
export function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** S3 encodes the path once (no double encoding, unlike other services), segment by segment. */
function canonicalUri(rawPath: string): string {
  return rawPath
    .split('/')
    .map((segment) => uriEncode(decodeURIComponent(segment)))
    .join('/');
}

function canonicalQuery(rawQuery: string): string {
  if (!rawQuery) return '';
  return rawQuery
    .split('&')
    .filter(Boolean)
    .map((pair) => {
      const at = pair.indexOf('=');
      const key = at < 0 ? pair : pair.slice(0, at);
      const value = at < 0 ? '' : pair.slice(at + 1);
      const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, '%20'));
      return [uriEncode(decode(key)), uriEncode(decode(value))] as const;
    })
    .sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

function headerValue(headers: WireRequest['headers'], name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  // Node joins repeated headers with ", " already for most; a list is joined the way SigV4 wants.
  return (Array.isArray(v) ? v.join(',') : v).trim().replace(/\s+/g, ' ');
}

export function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
}

/** The canonical request of `request` over `signedHeaders`, with `payloadHash` as its last line. */
export function canonicalRequest(request: WireRequest, signedHeaders: readonly string[], payloadHash: string): string {
  const q = request.url.indexOf('?');
  const rawPath = q < 0 ? request.url : request.url.slice(0, q);
  const rawQuery = q < 0 ? '' : request.url.slice(q + 1);
  const headers = signedHeaders.map((h) => `${h}:${headerValue(request.headers, h) ?? ''}\n`).join('');
  return [request.method, canonicalUri(rawPath), canonicalQuery(rawQuery), headers, signedHeaders.join(';'), payloadHash].join('\n');
}

function equalHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Checks the Authorization header of `request`. Throws SigV4Error with the
 * code S3 answers; returns what a streaming (chunk-signed) body needs next.
 */
export function verifySigV4(request: WireRequest, keys: ReadonlyMap<string, Credentials>, nowMs: number, maxSkewMs = 15 * 60_000): Verified {
  const auth = headerValue(request.headers, 'authorization');
  if (!auth) throw new SigV4Error('AccessDenied', 'request is not signed (no Authorization header)');
  const m = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) throw new SigV4Error('AuthorizationHeaderMalformed', `not an AWS4-HMAC-SHA256 Authorization header: ${auth}`, 400);
  const [, accessKeyId, date, region, service, signedList, signature] = m;
  const credentials = keys.get(accessKeyId);
  if (!credentials) throw new SigV4Error('InvalidAccessKeyId', `unknown access key ${accessKeyId}`);
  const signed = signedList.split(';');
  if (!signed.includes('host')) throw new SigV4Error('AccessDenied', 'the host header must be signed');
  for (const h of Object.keys(request.headers)) {
    if (h.startsWith('x-amz-') && !signed.includes(h)) {
      // S3 requires every x-amz-* header present to be signed.
      throw new SigV4Error('AccessDenied', `header ${h} is present but not signed`);
    }
  }
  const amzDate = headerValue(request.headers, 'x-amz-date');
  if (!amzDate || !/^\d{8}T\d{6}Z$/.test(amzDate)) throw new SigV4Error('AccessDenied', 'missing or malformed x-amz-date');
  if (amzDate.slice(0, 8) !== date) throw new SigV4Error('SignatureDoesNotMatch', `credential date ${date} is not the x-amz-date ${amzDate}`);
  const at = Date.UTC(+amzDate.slice(0, 4), +amzDate.slice(4, 6) - 1, +amzDate.slice(6, 8), +amzDate.slice(9, 11), +amzDate.slice(11, 13), +amzDate.slice(13, 15));
  if (Math.abs(at - nowMs) > maxSkewMs) throw new SigV4Error('RequestTimeTooSkewed', `x-amz-date ${amzDate} is more than ${maxSkewMs / 60_000} minutes from the server's time`);
  const token = headerValue(request.headers, 'x-amz-security-token');
  if ((credentials.sessionToken ?? undefined) !== (token ?? undefined)) throw new SigV4Error('InvalidToken', 'the session token does not belong to this access key');
  const payloadHash = headerValue(request.headers, 'x-amz-content-sha256');
  // S3 needs the payload hash header on every request (it is part of what is signed).
  if (!payloadHash) throw new SigV4Error('AccessDenied', 'missing x-amz-content-sha256', 400);

  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest(request, signed, payloadHash))].join('\n');
  const key = signingKey(credentials.secretAccessKey, date, region, service);
  const expected = hmac(key, stringToSign).toString('hex');
  if (!equalHex(expected, signature)) throw new SigV4Error('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.');
  return { accessKeyId, date: amzDate, scope, signingKey: key, signature, region, service };
}

/** The signature of one chunk of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body, chained from the previous one. */
export function chunkSignature(v: Pick<Verified, 'date' | 'scope' | 'signingKey'>, previous: string, chunk: Buffer): string {
  const stringToSign = ['AWS4-HMAC-SHA256-PAYLOAD', v.date, v.scope, previous, sha256Hex(''), sha256Hex(chunk)].join('\n');
  return hmac(v.signingKey, stringToSign).toString('hex');
}
