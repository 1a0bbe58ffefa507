// The delivery-TLS parts of the MTA config (issue 19): the policy ladder per
// destination (`delivery.tls_policy`, `tls_policies`), how MTA-STS policies are
// fetched (`mta_sts`), and the daily TLS-RPT reports (`tls_rpt`). Schema, raw
// shape, normalised shape and defaults sit together so they cannot drift.

import { parseDuration, parseSize } from '../units';
import { converter } from './events';

type Dur = string | number;
type Path = (string | number)[];
type Report = (path: Path, message: string) => void;

const duration = { type: ['string', 'integer'], description: 'e.g. 250ms, 30s, 5m, 2h, 4d' };
const size = { type: ['string', 'integer'], description: 'e.g. 512KB, 25MB' };

/**
 * The ladder, strongest first, plus `auto` (dane where usable TLSA exists,
 * else mta-sts where the domain publishes a policy, else may). The names the
 * config took before issue 19 stay accepted: they mean what they always did.
 */
export const TLS_POLICY_NAMES = ['auto', 'dane', 'mta-sts', 'verify', 'encrypt', 'may', 'none'] as const;
export type TlsPolicyName = (typeof TLS_POLICY_NAMES)[number];
export const TLS_POLICY_ALIASES: Readonly<Record<string, TlsPolicyName>> = { required: 'encrypt', opportunistic: 'may', never: 'none' };
const policyEnum = { enum: [...TLS_POLICY_NAMES, ...Object.keys(TLS_POLICY_ALIASES)] };

export const tlsPolicyField = { ...policyEnum, description: 'default TLS policy for every destination (auto: dane, else mta-sts, else may)' };

export const tlsCaFileField = {
  type: 'string',
  minLength: 1,
  description: "PEM CAs trusted for MX certificates (verify, mta-sts) in addition to Node's store (Postfix's smtp_tls_CAfile); read at start",
};

export const resolverDnssecField = {
  type: 'boolean',
  description: "the resolver.servers validate DNSSEC and are trusted (loopback or a trusted link): their AD bit enables DANE; default false",
};

export const tlsPoliciesSchema = {
  type: 'array',
  description: 'per-domain TLS policy; every other domain gets delivery.tls_policy',
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['domain', 'policy'],
    properties: { domain: { type: 'string', minLength: 1 }, policy: policyEnum },
  },
};

export const mtaStsSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'how MTA-STS policies (RFC 8461) are fetched',
  properties: {
    ca_file: { type: 'string', description: 'PEM CAs trusted for policy hosts in addition to the system ones (private PKI, tests)' },
    fetch_timeout: { ...duration, description: 'whole fetch of one policy (default 10s)' },
    max_policy_size: { ...size, description: 'largest policy body accepted (default 64KB, RFC 8461 3.3)' },
  },
};

export const tlsRptSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'daily TLS-RPT (RFC 8460) reports to the domains whose _smtp._tls record asks for them',
  properties: {
    enabled: { type: 'boolean' },
    organization_name: { type: 'string', minLength: 1 },
    contact_info: { type: 'string', minLength: 1, description: 'an address or URL the receiver can reach us at' },
    from: { type: 'string', minLength: 3, description: 'envelope and From: of mailto: reports (default noreply-smtp-tls-reporting@<hostname>)' },
    ca_file: { type: 'string', description: 'PEM CAs trusted for https: report endpoints in addition to the system ones (tests)' },
    post_timeout: { ...duration, description: 'one https: upload (default 30s)' },
  },
};

export interface RawMtaSts {
  ca_file?: string;
  fetch_timeout?: Dur;
  max_policy_size?: Dur;
}

export interface RawTlsRpt {
  enabled?: boolean;
  organization_name?: string;
  contact_info?: string;
  from?: string;
  ca_file?: string;
  post_timeout?: Dur;
}

export interface TlsDomainPolicy {
  domain: string;
  policy: TlsPolicyName;
}

export interface MtaStsConfig {
  caFile?: string;
  fetchTimeoutMs: number;
  maxPolicySize: number;
}

export interface TlsRptConfig {
  enabled: boolean;
  organizationName: string;
  contactInfo: string;
  from: string;
  caFile?: string;
  postTimeoutMs: number;
}

/** An old name (required, opportunistic, never) becomes its ladder name. */
export function canonicalPolicy(name: string): TlsPolicyName {
  return TLS_POLICY_ALIASES[name] ?? (name as TlsPolicyName);
}

export function normaliseTlsPolicies(raw: { domain: string; policy: string }[] | undefined): TlsDomainPolicy[] {
  return (raw ?? []).map((t) => ({ domain: t.domain.toLowerCase(), policy: canonicalPolicy(t.policy) }));
}

/**
 * resolver.dnssec: DANE trusts the resolver's AD bit, so it must be a
 * validating resolver the MTA asks directly; the system's (no servers listed)
 * is not one the config can vouch for.
 */
export function normaliseResolver(raw: { servers?: string[]; dnssec?: boolean } | undefined, report: Report): { servers: string[]; dnssec: boolean } {
  const servers = raw?.servers ?? [];
  const dnssec = raw?.dnssec ?? false;
  if (dnssec && servers.length === 0) report(['resolver', 'dnssec'], 'needs resolver.servers: the validating resolver whose AD bit DANE trusts');
  return { servers, dnssec };
}

export function normaliseMtaSts(raw: RawMtaSts | undefined, report: Report): MtaStsConfig {
  const convert = (v: Dur | undefined, dflt: number, path: Path, parse: (v: Dur) => number): number => converter(report, parse)(v, dflt, path);
  return {
    caFile: raw?.ca_file,
    fetchTimeoutMs: convert(raw?.fetch_timeout, 10_000, ['mta_sts', 'fetch_timeout'], parseDuration),
    maxPolicySize: convert(raw?.max_policy_size, 64 * 1024, ['mta_sts', 'max_policy_size'], parseSize),
  };
}

export function normaliseTlsRpt(raw: RawTlsRpt | undefined, hostname: string, report: Report): TlsRptConfig {
  const enabled = raw?.enabled ?? false;
  // A report must say who sent it (RFC 8460 4.4): no silent placeholder.
  if (enabled && !raw?.organization_name) report(['tls_rpt'], 'needs organization_name when enabled');
  if (enabled && !raw?.contact_info) report(['tls_rpt'], 'needs contact_info when enabled');
  return {
    enabled,
    organizationName: raw?.organization_name ?? '',
    contactInfo: raw?.contact_info ?? '',
    from: raw?.from ?? `noreply-smtp-tls-reporting@${hostname}`,
    caFile: raw?.ca_file,
    postTimeoutMs: converter(report, parseDuration)(raw?.post_timeout, 30_000, ['tls_rpt', 'post_timeout']),
  };
}
