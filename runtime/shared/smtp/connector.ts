import type { SmtpReply, Outcome } from './reply';

// The one seam between the delivery engine and the network. Direct delivery
// implements it here; the proxy tier and HAProxy mode implement it beside it,
// so the scheduler never knows which path a session took.

export type TlsPolicy = 'opportunistic' | 'required' | 'never';

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
  tls?: { version: string; cipher: string; verified: boolean };
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
  ) {
    super(message);
    this.name = 'ConnectError';
  }
}

export interface Connector {
  open(target: Target, source: Source, tls: TlsPolicy): Promise<OutboundSession>;
}
