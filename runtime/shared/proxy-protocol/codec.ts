/*
 * The Volley proxy protocol, version 1: how an MTA asks a proxy to send mail
 * from a sending IP the proxy holds. Both daemons use this file; neither
 * imports the other.
 *
 * TRANSPORT
 *   Always TLS (1.2 or later; the proxy offers 1.3). The MTA checks the
 *   proxy's certificate by SHA-256 fingerprint (pinned) or by a CA. Plain TCP
 *   never gets past the TLS handshake.
 *
 * FRAMES
 *   Every message, both ways, is one frame:
 *     u32 BE  frame length N (the bytes that follow, not counting these 4)
 *     u32 BE  header length H (H <= N)
 *     H bytes header: UTF-8 JSON object with a string field "t" (the type)
 *     N-H-4   body: raw bytes, used only by "transaction" (the message)
 *   Before authentication a frame may be at most 4 KiB; after, up to the
 *   decoder's limit (256 MiB by default). A frame over the limit, a header
 *   that is not a JSON object with "t", or an unexpected type closes the
 *   connection. Field names are snake_case. Unknown header fields are ignored,
 *   so a version can add fields without breaking the other side.
 *
 * HANDSHAKE (mutual HMAC challenge–response, bound to the TLS session)
 *   The shared secret is at least 32 bytes and never sent. Both sides compute
 *     ekm = TLS exporter (RFC 5705 / RFC 8446 7.5), 32 bytes,
 *           label "EXPORTER-volley-proxy", context "volley-proxy/1"
 *   which is the same on both ends of one TLS connection and different on any
 *   other, so a proof recorded on one connection is worthless on the next.
 *   1. MTA -> proxy  hello     { t, version: 1, nonce: b64(32 random bytes),
 *                                channel: "delivery", name?, ping_ms? }
 *        version: the highest the MTA speaks; a proxy that does not speak it
 *        answers { t: "error", code: "version", versions: [1] } and closes.
 *        channel: "delivery" (the DELIVERY frames below) or "control" (the
 *        CONTROL frames below); the default is "delivery". A proxy that does
 *        not serve the channel answers { t: "error", code: "channel" } and
 *        closes.
 *        ping_ms: the MTA's keep-alive interval (see KEEP-ALIVE below).
 *   2. proxy -> MTA  challenge { t, version: 1, nonce: b64(32 random bytes) }
 *   3. MTA -> proxy  auth      { t, proof: b64(HMAC-SHA256(secret,
 *                                "volley-proxy/1 mta" || ekm || nonce_mta || nonce_proxy)) }
 *        The proxy compares with timingSafeEqual. Wrong (wrong secret, a
 *        replay, another connection's proof): the proxy logs the reason and
 *        closes, sending nothing.
 *   4. proxy -> MTA  welcome   { t, proof: b64(HMAC-SHA256(secret,
 *                                "volley-proxy/1 proxy" || ekm || nonce_mta || nonce_proxy)),
 *                                name, sending_ips: [..], keepalive? }
 *        keepalive: true: this proxy answers pings at once and beacons
 *        (KEEP-ALIVE below).
 *        pipelining: true: this proxy takes a transaction before it has
 *        answered the previous one (PIPELINING below).
 *        The MTA checks the proof the same way and closes on a mismatch, so
 *        it never hands mail to a proxy that does not hold the secret.
 *        Both proofs cover both nonces; each side's label differs, so one
 *        side's proof can never be reflected back as the other's.
 *   The proxy also closes, with a log line, if the source address is not in
 *   its allow list, if the handshake is not done within its timeout, or on
 *   any frame out of order.
 *
 * DELIVERY (after welcome; one request at a time, answers in order, except
 * for transactions pipelined as PIPELINING below allows)
 *   connect      MTA -> proxy { t, sending_ip, mx: { host, ip, port }, helo,
 *                               tls: TlsRequirement { mode, policy, names?,
                               tlsa?, testing? } (smtp/connector.ts; the
                               old strings opportunistic|required|never are
                               still taken as may|encrypt|none),
 *                               timeouts?: ClientTimeouts (MX leg, ms) }
 *     The proxy takes an idle MX session from its pool for the key
 *     (sending_ip, mx ip:port, helo, tls requirement), or opens one from
 *     sending_ip: the greeting, EHLO and STARTTLS are the proxy's, and so is
 *     enforcing the requirement (a malformed one is connect_failed "error").
 *   connected    proxy -> MTA { t, reused: bool, session: { mx_host, mx_ip,
 *                               port, local_ip, helo, greeting,
 *                               capabilities: [..], tls?: { policy, verified,
 *                               failure?, version?, cipher? }, connect_ms,
 *                               transactions } }
 *   connect_failed proxy -> MTA { t, kind, message, reply?: SmtpReply,
 *                               tls?: { policy, verified, failure } }
 *     kind: refused | timeout | unreachable (could not connect),
 *           closed-before-greeting (connected, closed before a 220),
 *           greeting-rejected (reply is the greeting or EHLO answer),
 *           tls-required, ip-not-hosted (sending_ip is not in this proxy's
 *           list), error.
 *   transaction  MTA -> proxy { t, from, to: [..] } + body: the message bytes
 *     (not dot-stuffed; the proxy does that). Only while connected.
 *   result       proxy -> MTA { t, recipients: [{ rcpt, reply, outcome }],
 *                               envelope_ms, data_ms, usable }
 *     recipients: one per recipient of the transaction, in its order; outcome
 *     "delivered" only on a 2xx reply, "failed" only on a 5xx. The MTA takes
 *     any other result for a broken link (envelope.ts, resultProblem): the
 *     transaction is deferred, never recorded from an answer not its own.
 *   transaction_failed proxy -> MTA { t, message, usable: false, proxy_link? }
 *     The MX connection broke mid-transaction; the proxy has dropped it.
 *     proxy_link: true: the transaction never reached the MX because of the
 *     proxy itself (stopping, or a reload no longer admits the link): the
 *     MTA retries it as it retries a lost link.
 *   release      MTA -> proxy { t, reuse: bool }
 *     Ends the MTA's use of the session; no answer. With reuse and a usable
 *     session under max_transactions_per_session, the proxy keeps it idle
 *     for idle_timeout for the next connect from any MTA; otherwise QUIT.
 *     The same MTA connection may then send connect again: connections are
 *     reused across deliveries.
 *   ping / pong  either way, any time after welcome: keep-alive (below).
 *
 * PIPELINING (RFC 2920 across transactions, carried over the link)
 *   A proxy whose welcome says pipelining: true takes the next transaction
 *   frame of a session before it has sent the previous one's answer, and
 *   the MTA sends one when the session's MX offered PIPELINING (in
 *   connected.session.capabilities). The proxy writes the next envelope to
 *   the MX right behind the current body, so a backlog costs one MX round
 *   trip a message instead of two. Every transaction frame still gets exactly
 *   one answer (result or transaction_failed), in the order sent. One that
 *   follows a transaction which lost the MX session (or arrives while the
 *   proxy stops, or after a reload stopped admitting the link) is answered
 *   transaction_failed without reaching the MX. The MTA keeps at most two
 *   transactions unanswered behind the one awaiting its final reply, and
 *   sends release only once every transaction is answered. An MTA of an
 *   earlier release never pipelines; a proxy of an earlier release does not
 *   announce it and is sent one transaction at a time (it would take a
 *   second frame after a lost session for a protocol error).
 *   error        proxy -> MTA { t, code, message }: a request the proxy could
 *     not take (e.g. transaction without a session); the proxy then closes.
 *
 * CONTROL (after welcome on a channel: "control" hello; cluster-wide throttles)
 *   One persistent connection per MTA and proxy. The proxy decides permits
 *   for all MTAs connected to it, per throttle key ("<vmta or sending
 *   ip>|<destination>"), merging the limits each MTA registers by average
 *   or sum (the proxy's throttle_merge). Requests may be pipelined; every
 *   acquire gets exactly one grant with its id, in order.
 *   acquire  MTA -> proxy { t, id: int, kind: "connection" | "message", key,
 *                           limits: { max_connections: int,
 *                                     max_messages_per_hour: int | null },
 *                           reclaim?: bool }
 *     Registers the MTA's limits for the key and asks for one permit.
 *     "connection": a concurrent connection, held until release. "message":
 *     one message counted in the key's sliding hour (nothing to release).
 *     reclaim: a connection permit the MTA held before its control
 *     connection broke; granted regardless, so the count is right again.
 *   grant    proxy -> MTA { t, id, ok: bool, wait_ms?: int }
 *     ok: false with wait_ms: when the hourly window frees a message.
 *   release  MTA -> proxy { t, key }
 *     Gives back one connection permit; no answer. Unknown keys are ignored.
 *   ping / pong as on the delivery channel.
 *   When the connection closes, the proxy forgets the MTA: its limits and
 *   the connection permits it held. The MTA reconnects with backoff, and
 *   until then answers "not now" to its own deliveries through that proxy.
 *   A malformed frame closes the connection (error code "protocol").
 *
 * KEEP-ALIVE (heartbeat.ts has the arithmetic)
 *   The MTA pings every ping_ms (5 s) on every link, idle or busy, and
 *   takes a proxy that sent no byte for 2 intervals for dead: it closes the
 *   link, what waited on it fails, and it redials. A proxy answers a ping at
 *   once, even mid-connect or mid-transaction; to an MTA that sent ping_ms
 *   it also sends an unasked pong every ping_ms (a beacon: the answer to a
 *   ping can queue behind a long upload of the MTA's, the beacon cannot),
 *   and closes the link after 3 silent intervals (the MTA's host is gone),
 *   freeing its permits. The MTA takes pongs off the stream: one is never
 *   an answer. Without keepalive in the welcome (an earlier proxy) the MTA
 *   enforces the bound on control links only.
 *
 * VERSIONING
 *   "hello.version" picks the version. A later version adds frame families
 *   (e.g. the throttle control channel) under new types and/or a new
 *   channel; version 1 peers close on types they do not know.
 */
import { VolleyError } from '../errors';

export const PROTOCOL_VERSION = 1;
export const PRE_AUTH_MAX_FRAME = 4 * 1024;
export const DEFAULT_MAX_FRAME = 256 * 1024 * 1024;

export interface Frame {
  header: FrameHeader;
  body?: Buffer;
}

export interface FrameHeader {
  t: string;
  [field: string]: unknown;
}

export class ProtocolError extends VolleyError {
  constructor(message: string) {
    super('EPROXYPROTO', message);
    this.name = 'ProtocolError';
  }
}

/** One frame on the wire. */
export function encodeFrame(header: FrameHeader | { t: string }, body?: Buffer): Buffer {
  // One buffer, the header written straight into it: a frame is sent per
  // message each way, and three allocations and a concat each were measurable.
  const json = JSON.stringify(header);
  const jsonLength = Buffer.byteLength(json, 'utf8');
  const bodyLength = body?.length ?? 0;
  const frame = Buffer.allocUnsafe(8 + jsonLength + bodyLength);
  frame.writeUInt32BE(4 + jsonLength + bodyLength, 0);
  frame.writeUInt32BE(jsonLength, 4);
  frame.write(json, 8, jsonLength, 'utf8');
  if (body && bodyLength > 0) body.copy(frame, 8 + jsonLength);
  return frame;
}

/**
 * Incremental frame decoder: push bytes as they arrive, get whole frames.
 * Throws ProtocolError on anything malformed; the caller closes the
 * connection (there is no resynchronising a length-prefixed stream).
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(public maxFrame = PRE_AUTH_MAX_FRAME) {}

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.buffered < 4) break;
      const head = this.peek(8);
      const length = head.readUInt32BE(0);
      if (length < 4 || length > this.maxFrame) throw new ProtocolError(`frame length ${length} out of range (max ${this.maxFrame})`);
      if (this.buffered < 4 + length) break;
      const whole = this.take(4 + length);
      const headerLength = whole.readUInt32BE(4);
      if (headerLength > length - 4 || headerLength === 0) throw new ProtocolError(`header length ${headerLength} out of range`);
      const header = parseHeader(whole.subarray(8, 8 + headerLength));
      const body = whole.length > 8 + headerLength ? whole.subarray(8 + headerLength) : undefined;
      frames.push(body ? { header, body } : { header });
    }
    return frames;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0].length >= n || this.chunks.length === 1) return this.chunks[0];
    this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0];
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

function parseHeader(bytes: Buffer): FrameHeader {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new ProtocolError('frame header is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || typeof (value as { t?: unknown }).t !== 'string') {
    throw new ProtocolError('frame header is not an object with a type');
  }
  return value as FrameHeader;
}
