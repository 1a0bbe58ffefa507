// The MTA's per-destination TLS decision (issue 19): for each MX host of a
// route, the TlsRequirement the session must reach, or a refusal when the
// domain's policy forbids that host. The ladder, strongest first:
//   dane     usable TLSA records, DNSSEC-validated (through TlsaLookup)
//   mta-sts  the domain's MTA-STS policy (enforce: verify the MX name; testing: the same check, failures logged, delivered as may)
//   verify   certificate valid for the MX name
//   encrypt  TLS, no verification (the old `required`)
//   may      opportunistic, clear text after a failed handshake (the old `opportunistic`)
//   none     no STARTTLS (the old `never`)
// `auto` (the default) is dane where usable TLSA exists, else mta-sts where a
// policy exists, else may; `dane` alone falls back to may, `mta-sts` alone to may.
// DANE and MTA-STS are about a domain's published MX hosts, so they apply to
// MX (and implicit-MX) routes only: a static route (smarthost) gets the
// configured fixed modes, and may for the DNS-based ones.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { TlsPolicyName, VolleyConfig } from '../../../shared/config/types';
import type { TlsaRecord, TlsRequirement } from '../../../shared/smtp/connector';
import { DnsTxt } from './dns-txt';
import { StsCache, type StsLookup } from './sts-cache';
import { mxMatches } from './sts-policy';
import { cachedTlsa } from './tlsa-cache';
import { DnsTlsaLookup } from './tlsa-dns';
import { noDnssecResolver, type TlsaLookup } from './tlsa-lookup';

/** The policy a session was held to, as TLS-RPT (RFC 8460 4.4) names it. */
export interface ReportedPolicy {
  type: 'sts' | 'tlsa' | 'no-policy-found';
  domain: string;
  /** sts: the policy's lines; tlsa: the records as presented in DNS. */
  strings: string[];
  /** sts: the policy's MX patterns; tlsa: the MX host. */
  mxHost?: string[];
}

export type MxTls =
  | {
      use: true;
      host: string;
      requirement: TlsRequirement;
      report: ReportedPolicy;
      /** A check that failed before any session (MTA-STS testing with the MX outside the patterns, a policy that could not be fetched): logged and reported, not enforced. */
      failure?: { resultType: string; reason: string };
    }
  | {
      use: false;
      host: string;
      /** The RFC 8460 result type: sts-policy-invalid (MX not in an enforced policy), dnssec-invalid (TLSA lookup failed). */
      resultType: string;
      reason: string;
      report: ReportedPolicy;
    };

export interface ResolverOptions {
  config: VolleyConfig;
  /** The TLSA lookup (tests); absent: tlsaFor(config), i.e. DNS when resolver.dnssec, else none and no DANE. */
  tlsa?: TlsaLookup;
  logger?: Logger;
  now?: () => number;
  /** MTA-STS policy hosts' port (443; tests serve on another). */
  stsPort?: number;
  /** Where MTA-STS policies are kept across restarts; memory only when absent. */
  stsFile?: string;
}

/** Each worker's MTA-STS policies, under the persistent path (the directory is made here). */
export function stsCacheFile(persistentPath: string, worker: number): string {
  const dir = join(persistentPath, 'mta-sts');
  mkdirSync(dir, { recursive: true });
  return join(dir, `w${worker}.json`);
}

/**
 * The TLSA lookup the config asks for: DNS through resolver.servers when
 * resolver.dnssec says they validate (their AD bit is then trusted), else
 * none, so `auto` and `dane` never pick DANE on data nobody validated.
 */
export function tlsaFor(config: VolleyConfig): TlsaLookup {
  return config.resolver.dnssec ? new DnsTlsaLookup({ servers: config.resolver.servers }) : noDnssecResolver;
}

const FIXED: Readonly<Record<string, TlsRequirement['mode']>> = { verify: 'verify', encrypt: 'encrypt', may: 'may', none: 'none' };

export class TlsPolicyResolver {
  private config: VolleyConfig;
  private perDomain = new Map<string, TlsPolicyName>();
  private sts: StsCache;
  private tlsa: TlsaLookup;

  constructor(private readonly options: ResolverOptions) {
    this.config = options.config;
    this.tlsa = this.makeTlsa(options.config);
    this.sts = this.makeSts(options.config);
    this.apply(options.config);
  }

  apply(config: VolleyConfig): void {
    const resolverChanged = JSON.stringify([config.resolver, config.mtaSts]) !== JSON.stringify([this.config.resolver, this.config.mtaSts]);
    this.config = config;
    this.perDomain = new Map(config.tlsPolicies.map((p) => [p.domain, p.policy]));
    if (resolverChanged) {
      this.sts = this.makeSts(config);
      this.tlsa = this.makeTlsa(config);
    }
  }

  /** The configured policy of a domain (its own entry, else the default). */
  policyOf(domain: string): TlsPolicyName {
    return this.perDomain.get(domain.toLowerCase()) ?? this.config.delivery.tlsPolicy;
  }

  /** The domain's MTA-STS state as cached, without waiting (undefined: not looked up yet or expired). */
  cachedSts(domain: string): StsLookup | undefined {
    return this.sts.peek(domain.toLowerCase());
  }

  /** Resolves once no MTA-STS lookup or background refresh is running. */
  stsIdle(): Promise<void> {
    return this.sts.idle();
  }

  /**
   * What each MX host of a route must reach, in the route's order. Waits only
   * for what is not cached: MTA-STS policies are cached per domain (the
   * delivery that finds one due for refresh does not wait for it).
   */
  async forHosts(domain: string, hosts: { host: string; port: number }[], source: 'static' | 'mx' | 'implicit'): Promise<MxTls[]> {
    const d = domain.toLowerCase();
    let name = this.policyOf(d);
    const dnsBased = name === 'auto' || name === 'dane' || name === 'mta-sts';
    if (dnsBased && source === 'static') name = 'may';
    const noPolicy: ReportedPolicy = { type: 'no-policy-found', domain: d, strings: [] };
    const fixed = FIXED[name];
    if (fixed) return hosts.map(({ host }) => ({ use: true, host, requirement: { mode: fixed, policy: fixed, ...(fixed === 'verify' ? { names: [host] } : {}) }, report: noPolicy }));

    const sts = name === 'dane' ? undefined : await this.sts.get(d);
    return Promise.all(
      hosts.map(async ({ host, port }): Promise<MxTls> => {
        if (name !== 'mta-sts') {
          const dane = await this.dane(d, host, port);
          if (dane) return dane;
        }
        return sts ? fromSts(d, host, sts) : { use: true, host, requirement: { mode: 'may', policy: 'may' }, report: noPolicy };
      }),
    );
  }

  /** DANE for one MX host (RFC 7672 2.2): a requirement, a refusal when the lookup failed, undefined when there is no secure TLSA. */
  private async dane(domain: string, host: string, port: number): Promise<MxTls | undefined> {
    let answer;
    try {
      answer = await this.tlsa.lookup(host, port);
    } catch (err) {
      // A failed (or bogus) lookup cannot prove there is no TLSA: the MX is not used unauthenticated.
      return { use: false, host, resultType: 'dnssec-invalid', reason: `TLSA lookup for ${host} failed: ${(err as Error).message}`, report: { type: 'tlsa', domain, strings: [], mxHost: [host] } };
    }
    if (!answer.secure || answer.records.length === 0) return undefined;
    const report: ReportedPolicy = { type: 'tlsa', domain, strings: answer.records.map(presentTlsa), mxHost: [host] };
    const usable = answer.records.filter((r) => r.usage === 2 || r.usage === 3);
    // TLSA records exist but none is usable (PKIX usages 0/1 only): mandatory TLS, unauthenticated (RFC 7672 2.2).
    if (usable.length === 0) return { use: true, host, requirement: { mode: 'encrypt', policy: 'dane' }, report };
    // DANE-TA checks the certificate's names against the TLSA base domain (a CNAME-expanded name) and the MX host (RFC 7672 3.2.2).
    const base = answer.baseDomain;
    const names = base && base !== host.toLowerCase() ? [base, host] : [host];
    return { use: true, host, requirement: { mode: 'dane', policy: 'dane', names, tlsa: usable }, report };
  }

  private makeTlsa(config: VolleyConfig): TlsaLookup {
    return cachedTlsa(this.options.tlsa ?? tlsaFor(config), this.options.now);
  }

  private makeSts(config: VolleyConfig): StsCache {
    return new StsCache({ dns: new DnsTxt(config.resolver.servers), config: config.mtaSts, logger: this.options.logger, now: this.options.now, policyPort: this.options.stsPort, file: this.options.stsFile });
  }
}

function fromSts(domain: string, host: string, sts: StsLookup): MxTls {
  if (sts.kind === 'none') return { use: true, host, requirement: { mode: 'may', policy: 'may' }, report: { type: 'no-policy-found', domain, strings: [] } };
  if (sts.kind === 'failed') {
    // Published but not obtainable, nothing cached: deliver as may and report it (RFC 8461 5.1).
    return { use: true, host, requirement: { mode: 'may', policy: 'may' }, report: { type: 'sts', domain, strings: [] }, failure: { resultType: sts.failure, reason: sts.reason } };
  }
  const { policy } = sts;
  const report: ReportedPolicy = { type: 'sts', domain, strings: policy.lines, mxHost: policy.mx };
  if (policy.mode === 'none') return { use: true, host, requirement: { mode: 'may', policy: 'may' }, report };
  const matched = mxMatches(host, policy.mx);
  const reason = `MX ${host} is not in the MTA-STS policy of ${domain} (mx: ${policy.mx.join(', ')})`;
  if (policy.mode === 'enforce') {
    if (!matched) return { use: false, host, resultType: 'sts-policy-invalid', reason, report };
    return { use: true, host, requirement: { mode: 'verify', policy: 'mta-sts', names: [host] }, report };
  }
  // testing: checked as verify, but a failure is logged and the session carries on as may (the
  // contract's `testing`); an MX enforce would have refused is used, its failure logged and reported.
  const requirement: TlsRequirement = { mode: 'verify', policy: 'mta-sts', names: [host], testing: true };
  return matched ? { use: true, host, requirement, report } : { use: true, host, requirement, report, failure: { resultType: 'sts-policy-invalid', reason } };
}

/** A TLSA record as zone-file text (RFC 8460 4.4's policy-string for tlsa). */
function presentTlsa(r: TlsaRecord): string {
  return `${r.usage} ${r.selector} ${r.matchingType} ${r.data}`;
}
