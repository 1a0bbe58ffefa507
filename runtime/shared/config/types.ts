// The config after validation and normalisation: durations in ms, sizes in
// bytes, defaults filled in. Plain data only, so it can cross the cluster IPC.

import type { DrainConfig } from './drain';
import type { EventsConfig, InboundConfig } from './events';
import type { MtaStsConfig, TlsDomainPolicy, TlsPolicyName, TlsRptConfig } from './tls';

export type { MtaStsConfig, TlsDomainPolicy, TlsPolicyName, TlsRptConfig } from './tls';
import type { MtaMirrorConfig } from './mirror';

export type { DrainConfig } from './drain';
export type { MtaMirrorConfig } from './mirror';

export type { EventsConfig, InboundConfig, SinkConfig, WebhookSinkConfig, SqliteSinkConfig, S3SinkConfig, FilterConfig } from './events';

export type TlsMode = 'starttls' | 'implicit' | 'none';

export interface TlsFiles {
  cert: string;
  key: string;
}

export interface SmtpListenerConfig {
  name: string;
  port: number;
  address: string;
  tls: TlsMode;
  requireAuth: boolean;
}

export interface SmtpConfig {
  listeners: SmtpListenerConfig[];
  tls?: TlsFiles;
  maxMessageSize: number;
  maxRecipients: number;
  maxConnections: number;
  maxConnectionsPerClient: number;
  relayFrom: string[];
  trustedProxies: string[];
  socketTimeoutMs: number;
}

export interface HttpConfig {
  port: number;
  address: string;
  tls?: TlsFiles;
  maxBodySize: number;
  maxBatch: number;
  /** Connections open at once, per worker (as smtp.max_connections); past it a new one is answered 503 and closed. */
  maxConnections: number;
  tokens: { name: string; sha256: string }[];
}

export interface VmtaConfig {
  name: string;
  ip: string;
  helo: string;
}

export interface PoolConfig {
  name: string;
  vmtas: { name: string; weight: number }[];
}

export interface RouteConfig {
  domain: string;
  host: string;
  port: number;
}

export interface DeliveryConfig {
  retryMs: number[];
  maxLifetimeMs: number;
  concurrency: number;
  connectTimeoutMs: number;
  greetingTimeoutMs: number;
  /** Send RFC 3464 bounces to the return path. */
  dsn: boolean;
  /** Pipeline across transactions on sessions that offer PIPELINING (RFC 2920). */
  pipelineTransactions: boolean;
  /** MX addresses one delivery tries at most (Postfix smtp_mx_address_limit); 0: no limit. */
  mxAddressLimit: number;
  /** Sessions that got through greeting and EHLO one delivery opens at most (Postfix smtp_mx_session_limit); 0: no limit. */
  mxSessionLimit: number;
  /** The TLS policy of every destination `tls_policies` does not name (old names already mapped). */
  tlsPolicy: TlsPolicyName;
  /** PEM CAs added to Node's store for MX certificates (verify, mta-sts); read at start. */
  tlsCaFile?: string;
}

export type BounceCategoryName = 'bad-mailbox' | 'bad-domain' | 'policy' | 'quota' | 'inactive' | 'routing' | 'protocol' | 'content' | 'other';

/** A classification rule; all given conditions must match. Checked before the built-in table. */
export interface BounceRuleConfig {
  category: BounceCategoryName;
  code?: number;
  enhanced?: string;
  text?: string;
}

/** A name for every domain whose MX hosts end in one of `mx` (e.g. google: google.com). */
export interface RollupConfig {
  name: string;
  mx: string[];
}

export interface ThrottleRule {
  vmta?: string;
  /** A domain, a rollup name, or "*". */
  destination: string;
  maxConnections?: number;
  maxMessagesPerHour?: number;
}

export interface BackoffRule {
  destination?: string;
  code?: number;
  text?: string;
  pauseMs: number;
}

export interface ProxyServerRef {
  name: string;
  host: string;
  port: number;
  fingerprint?: string;
  caFile?: string;
  sendingIps: string[];
}

/** Sending IPs held by proxies (listed in order of preference for an IP held by several). */
export interface ProxiesConfig {
  secretFile?: string;
  servers: ProxyServerRef[];
}

/** A sending IP held by an HAProxy server: the MTA connects to its frontend and names the MX in a PROXY header. */
export interface HaproxyFrontend {
  sendingIp: string;
  host: string;
  port: number;
  proxyProtocol: 'v1' | 'v2';
}

export interface DkimKeyConfig {
  domain: string;
  selector: string;
  algorithm: 'rsa-sha256' | 'ed25519-sha256';
  /** PEM file; keys never sit in the config itself (it lives in git). */
  privateKeyFile: string;
  /** Header fields to sign; a sane default when absent. */
  headers?: string[];
}

export interface VolleyConfig {
  hostname: string;
  log: { level: string };
  smtp: SmtpConfig;
  http: HttpConfig;
  /** tokens: for everything but /healthz, /readyz, /metrics; healthListen: those three alone on another address. */
  admin: { port: number; address: string; tokens: { name: string; sha256: string }[]; healthListen?: { port: number; address: string } };
  users: { name: string; password: string }[];
  spool: {
    segmentSize: number;
    fsync: boolean;
    /** Intake refuses while the volume's free space is below this (bytes, or percent of the volume). */
    minFree: { bytes: number } | { percent: number };
    /** Bytes per worker preallocated for delivery records (state/done records, attempt log lines). */
    reserve: number;
  };
  vmtas: VmtaConfig[];
  pools: PoolConfig[];
  defaultPool?: string;
  routing: { senderDomain: string; pool?: string; vmta?: string }[];
  routes: RouteConfig[];
  /** dnssec: the servers validate DNSSEC and their AD bit is trusted (DANE). */
  resolver: { servers: string[]; dnssec: boolean };
  delivery: DeliveryConfig;
  events: EventsConfig;
  /** The listener for DSNs and ARF reports; none when absent. */
  inbound?: InboundConfig;
  /** The drain endpoint (issue 17); none when absent. */
  drain?: DrainConfig;
  /** This node is one of an HA mirror pair; mode sync: a barrier before every acknowledgement (absent: not mirrored, or async). */
  mirror?: MtaMirrorConfig;
  dkim: DkimKeyConfig[];
  rollups: RollupConfig[];
  bounceRules: BounceRuleConfig[];
  proxies?: ProxiesConfig;
  /** `mtas`: how many MTAs send through these frontends; each enforces 1/N of a throttle. */
  haproxy?: { frontends: HaproxyFrontend[]; mtas: number };
  tlsPolicies: TlsDomainPolicy[];
  mtaSts: MtaStsConfig;
  tlsRpt: TlsRptConfig;
  throttles: ThrottleRule[];
  backoff: BackoffRule[];
}
