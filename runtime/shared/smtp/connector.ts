import type { SmtpReply, Outcome } from './reply';

// The one seam between the delivery engine and the network. Direct delivery
// implements it here; the proxy tier and HAProxy mode implement it beside it,
// so the scheduler never knows which path a session took.

/*
 * Issue 19's TLS ladder (the contract its pieces are built against). The MTA decides per destination and MX host what
 * a session must reach (DANE from DNSSEC-validated TLSA records, MTA-STS from
 * the domain's policy, or configuration) and hands the result to whichever hop
 * opens the session (direct, proxy, HAProxy), which enforces it.
 *   none    no STARTTLS
 *   may     STARTTLS when offered, no verification; a failed handshake is
 *           retried in clear (RFC 7435)
 *   encrypt STARTTLS required, no verification (the old `required`)
 *   verify  STARTTLS required, certificate chain valid and issued for one of
 *           `names` (MTA-STS enforce: the MX host matched the policy)
 *   dane    STARTTLS required, the chain matches one of `tlsa` (RFC 7672:
 *           DANE-EE 3 x x against the leaf, DANE-TA 2 x x against an issuer
 *           plus a name check against `names`)
 */
export type TlsMode = 'none' | 'may' | 'encrypt' | 'verify' | 'dane';

/** Which rule decided the mode, for the attempt log's `tls_policy`. */
export type TlsPolicySource = 'dane' | 'mta-sts' | 'verify' | 'encrypt' | 'may' | 'none';

/** One TLSA record (RFC 6698): certificate usage, selector, matching type, association data in hex. */
export interface TlsaRecord {
  usage: number;
  selector: number;
  matchingType: number;
  data: string;
}

export interface TlsRequirement {
  mode: TlsMode;
  policy: TlsPolicySource;
  /** verify/dane: the names the certificate may be issued for (the MX host; DANE-TA also the TLSA base domain). */
  names?: string[];
  /** dane: the usable TLSA records of the MX host (never empty in dane mode). */
  tlsa?: TlsaRecord[];
  /** MTA-STS `testing`: a failed check is logged (tls_failure) and the session carries on as `may`. */
  testing?: boolean;
}

/** What the session reached, for the attempt log (tls_policy, tls_verified, tls_failure). */
export interface TlsOutcome {
  policy: TlsPolicySource;
  /** True when the policy's check passed (verify: chain and name; dane: a TLSA match). */
  verified: boolean;
  /** Why a check failed (kept even when `testing` let the session go on), RFC 8460 result-type words where one fits. */
  failure?: string;
}

/** What a session reports of its TLS: the outcome, and the protocol and cipher once encrypted. */
export interface SessionTls extends TlsOutcome {
  version?: string;
  cipher?: string;
}

export interface Target {
  /** The MX host name (for TLS SNI and the log) and the address to connect to. */
  host: string;
  ip: string;
  port: number;
}

export interface Source {
  /** The virtual MTA's sending IP; undefined lets the OS choose. */
  ip?: string;
  helo: string;
  vmta?: string;
}

export interface SessionInfo {
  mxHost: string;
  mxIp: string;
  port: number;
  localIp?: string;
  helo: string;
  greeting?: string;
  /** The requirement's outcome; version and cipher when the session runs inside TLS. */
  tls?: SessionTls;
  /** Which path carried the session: direct, proxy:<name>, haproxy:<frontend>. */
  via: string;
  connectMs: number;
}

export interface RecipientResult {
  rcpt: string;
  reply: SmtpReply;
  outcome: Outcome;
}

export interface TransactionResult {
  recipients: RecipientResult[];
  envelopeMs: number;
  dataMs: number;
}

export interface SendOptions {
  /** Called once the body is written and its final reply awaited: a pipelined session takes the next send() from then on. */
  onBodySent?: () => void;
}

export interface OutboundSession {
  readonly info: SessionInfo;
  /** False once the server closed or a transaction failed at the protocol level. */
  readonly usable: boolean;
  /**
   * True when the session may take the next send() as soon as the previous
   * one has sent its body (RFC 2920 pipelining across transactions): the
   * next envelope then travels with this body instead of a round trip later.
   */
  readonly pipelined?: boolean;
  /**
   * The MX's EHLO keywords, where the session knows them: the engine converts
   * 8-bit mail to 7 bit before DKIM signing for a peer without 8BITMIME
   * (RFC 6152), so the signature covers what is sent.
   */
  readonly capabilities?: readonly string[];
  send(from: string, to: string[], message: Buffer, options?: SendOptions): Promise<TransactionResult>;
  /** QUIT and close (or hand back to a pool, for the proxy path). */
  close(): void;
}

/** Why a session could not be opened: the proxy tier must tell these apart too. */
export type ConnectFailure = 'refused' | 'timeout' | 'unreachable' | 'closed-before-greeting' | 'greeting-rejected' | 'tls-required' | 'ip-not-hosted' | 'error';

export class ConnectError extends Error {
  constructor(
    readonly kind: ConnectFailure,
    message: string,
    readonly reply?: SmtpReply,
    /** Set when the TLS requirement is why the session could not be opened (for tls_policy/tls_failure). */
    readonly tls?: TlsOutcome,
  ) {
    super(message);
    this.name = 'ConnectError';
  }
}

export interface Connector {
  open(target: Target, source: Source, tls: TlsRequirement): Promise<OutboundSession>;
}
