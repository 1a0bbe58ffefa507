import type { ClientTimeouts } from '../smtp/client';
import type { ConnectFailure, RecipientResult, SessionTls, TlsOutcome, TlsRequirement } from '../smtp/connector';
import type { SmtpReply } from '../smtp/reply';

// The delivery frames' headers, as codec.ts describes them.

export interface ConnectRequest {
  t: 'connect';
  sending_ip: string;
  mx: { host: string; ip: string; port: number };
  helo: string;
  /** What the MX session must reach; the proxy enforces it (a malformed one is refused, never weakened). */
  tls: TlsRequirement;
  timeouts?: Partial<ClientTimeouts>;
}

export interface WireSession {
  mx_host: string;
  mx_ip: string;
  port: number;
  local_ip?: string;
  helo: string;
  greeting?: string;
  capabilities: string[];
  tls?: SessionTls;
  connect_ms: number;
  /** Transactions this MX session carried before this connect. */
  transactions: number;
}

export interface Connected {
  t: 'connected';
  reused: boolean;
  session: WireSession;
}

export interface ConnectFailed {
  t: 'connect_failed';
  kind: ConnectFailure;
  message: string;
  reply?: SmtpReply;
  /** When the TLS requirement is why the MX session failed: what was reached, for the MTA's attempt log. */
  tls?: TlsOutcome;
}

export interface TransactionRequest {
  t: 'transaction';
  from: string;
  to: string[];
}

export interface TransactionReply {
  t: 'result';
  recipients: RecipientResult[];
  envelope_ms: number;
  data_ms: number;
  usable: boolean;
}

export interface TransactionFailed {
  t: 'transaction_failed';
  message: string;
  usable: false;
  /** The proxy, not the MX, is why (it is stopping, or no longer admits the link): never sent, to be retried soon through any proxy. */
  proxy_link?: true;
}

export interface Release {
  t: 'release';
  reuse: boolean;
}

export const CONNECT_FAILURES: readonly ConnectFailure[] = ['refused', 'timeout', 'unreachable', 'closed-before-greeting', 'greeting-rejected', 'tls-required', 'ip-not-hosted', 'error'];
