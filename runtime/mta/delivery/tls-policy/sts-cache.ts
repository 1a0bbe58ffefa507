// MTA-STS policies of destination domains (RFC 8461 3.3, 5.1), fetched on
// first use and kept in memory: a policy is used for its max_age; its TXT id
// is checked again now and then and a new id fetches the policy again; it is
// refreshed ahead of expiry, in the background, so the delivery that finds it
// due does not wait. Only a domain with nothing usable cached waits for DNS
// and HTTPS. Time comes from an injected clock, so tests step through
// max_age without sleeping.
//
// With a `file`, the policies (not the "no policy" answers, which are cheap to
// ask again) are also written there whenever one is fetched, and read back at
// start: a restart must not open the window MTA-STS closes, where an attacker
// who blocks the policy fetch gets a domain delivered as `may` (RFC 8461, security considerations).

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { MtaStsConfig } from '../../../shared/config/types';
import { errorCode } from '../../../shared/errors';
import type { DnsTxt } from './dns-txt';
import { httpsRequest } from './https-client';
import { parseStsPolicy, parseStsTxt, type StsPolicy } from './sts-policy';

/** The RFC 8460 result types of a policy that could not be had. */
export type StsFetchFailure = 'sts-policy-fetch-error' | 'sts-policy-invalid' | 'sts-webpki-invalid';

export type StsLookup =
  | { kind: 'none' }
  | { kind: 'policy'; policy: StsPolicy; id: string }
  /** The domain publishes a policy (its TXT says so) that could not be fetched or parsed, and none is cached. */
  | { kind: 'failed'; failure: StsFetchFailure; reason: string };

export interface StsCacheOptions {
  dns: DnsTxt;
  config: MtaStsConfig;
  logger?: Logger;
  now?: () => number;
  /** Port of the policy hosts (443; tests serve on another). */
  policyPort?: number;
  /** Where the policies are kept across restarts (JSON); memory only when absent. */
  file?: string;
}

interface Entry {
  result: StsLookup;
  /** Past this the entry is gone: the next use waits for a fresh lookup. */
  expiresAt: number;
  /** Past this the next use starts a background check (TXT id, and a refetch when due). */
  checkAt: number;
  /** Past this a background check fetches the policy even when the id is unchanged (refresh before expiry). */
  refetchAt: number;
}

/** How long "no policy published" is believed. */
const NONE_TTL_MS = 3_600_000;
/** How long a failed fetch (with nothing cached) is believed before the domain is asked again. */
const FAILED_TTL_MS = 300_000;
/** How often a cached policy's TXT id is checked again (at most). */
const TXT_CHECK_MS = 3_600_000;
/** A failed background check is tried again this much later. */
const RETRY_MS = 300_000;
/** Domains remembered at most (a sender reaches millions): expired entries go first, then the oldest. */
const MAX_ENTRIES = 100_000;
const CERT_ERRORS = /CERT|SELF_SIGNED|ALTNAME|UNABLE_TO|SIGNATURE|HOSTNAME|EXPIRED/;

export class StsCache {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<StsLookup>>();
  private readonly now: () => number;

  constructor(private readonly options: StsCacheOptions) {
    this.now = options.now ?? Date.now;
    if (options.file) this.load(options.file);
  }

  /** The domain's policy as cached, without waiting; starts a background check when one is due. Undefined: nothing usable cached. */
  peek(domain: string): StsLookup | undefined {
    const entry = this.entries.get(domain);
    const now = this.now();
    if (!entry || entry.expiresAt <= now) return undefined;
    if (entry.checkAt <= now && !this.inflight.has(domain)) void this.refresh(domain, entry);
    return entry.result;
  }

  /** The domain's policy: the cached one, or a lookup (shared by concurrent callers). */
  async get(domain: string): Promise<StsLookup> {
    const cached = this.peek(domain);
    if (cached) return cached;
    const pending = this.inflight.get(domain);
    if (pending) return pending;
    const p = this.lookup(domain, undefined).finally(() => this.inflight.delete(domain));
    this.inflight.set(domain, p);
    return p;
  }

  /** Resolves once no lookup or background refresh is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight.values()]);
  }

  private refresh(domain: string, entry: Entry): Promise<StsLookup> {
    const p = this.lookup(domain, entry).finally(() => this.inflight.delete(domain));
    this.inflight.set(domain, p);
    return p;
  }

  /** Asks DNS for the id; fetches the policy when there is no cached one, the id changed, or the cached one is due for refresh. */
  private async lookup(domain: string, cached: Entry | undefined): Promise<StsLookup> {
    const now = this.now();
    const current = cached?.result.kind === 'policy' ? cached.result : undefined;
    let id: string | undefined;
    try {
      id = parseStsTxt(await this.options.dns.txt(`_mta-sts.${domain}`));
    } catch (err) {
      // DNS trouble: a cached policy stands (it is exactly what protects against a blocked lookup).
      if (current && cached) return this.keep(cached, now);
      return this.store(domain, { kind: 'none' }, now + FAILED_TTL_MS, (err as Error).message);
    }
    if (id === undefined) {
      // Removing the TXT record does not withdraw a cached policy before its max_age (RFC 8461 8.3).
      if (current && cached) return this.keep(cached, now);
      return this.store(domain, { kind: 'none' }, now + NONE_TTL_MS);
    }
    if (current && cached && current.id === id && now < cached.refetchAt) return this.keep(cached, now);
    try {
      const policy = await this.fetch(domain);
      const maxAgeMs = policy.maxAge * 1000;
      const result: StsLookup = { kind: 'policy', policy, id };
      this.put(domain, {
        result,
        expiresAt: now + maxAgeMs,
        checkAt: now + Math.min(TXT_CHECK_MS, maxAgeMs / 2),
        // Refresh well ahead of expiry: half-way for short lives, a day before for long ones.
        refetchAt: now + Math.max(maxAgeMs / 2, maxAgeMs - 86_400_000),
      });
      this.options.logger?.debug({ domain, mode: policy.mode, mx: policy.mx, max_age: policy.maxAge, id }, 'MTA-STS policy fetched');
      this.save();
      return result;
    } catch (err) {
      const reason = (err as Error).message;
      this.options.logger?.warn({ domain, err: reason }, 'MTA-STS policy fetch failed');
      if (current && cached) return this.keep(cached, now);
      return this.store(domain, { kind: 'failed', failure: failureType(err), reason }, now + FAILED_TTL_MS);
    }
  }

  private keep(entry: Entry, now: number): StsLookup {
    entry.checkAt = Math.min(entry.expiresAt, now + (now >= entry.refetchAt ? RETRY_MS : TXT_CHECK_MS));
    return entry.result;
  }

  private store(domain: string, result: StsLookup, expiresAt: number, why?: string): StsLookup {
    if (why) this.options.logger?.warn({ domain, err: why }, 'MTA-STS TXT lookup failed');
    this.put(domain, { result, expiresAt, checkAt: expiresAt, refetchAt: expiresAt });
    return result;
  }

  private put(domain: string, entry: Entry): void {
    if (this.entries.size >= MAX_ENTRIES && !this.entries.has(domain)) {
      const now = this.now();
      for (const [k, v] of this.entries) if (v.expiresAt <= now) this.entries.delete(k);
      for (const k of this.entries.keys()) {
        if (this.entries.size < MAX_ENTRIES) break;
        this.entries.delete(k);
      }
    }
    // Re-inserted, so Map order is the order of last fetch (oldest first for eviction).
    this.entries.delete(domain);
    this.entries.set(domain, entry);
  }

  /** Writes the unexpired policies (whole file, renamed into place: never half a file). */
  private save(): void {
    const file = this.options.file;
    if (!file) return;
    const now = this.now();
    const saved: SavedPolicy[] = [];
    for (const [domain, e] of this.entries) {
      if (e.result.kind === 'policy' && e.expiresAt > now) saved.push({ domain, id: e.result.id, lines: e.result.policy.lines, expiresAt: e.expiresAt, refetchAt: e.refetchAt });
    }
    try {
      writeFileSync(`${file}.tmp`, JSON.stringify(saved));
      renameSync(`${file}.tmp`, file);
    } catch (err) {
      // Memory still has them: enforcement goes on, only a restart would forget.
      this.options.logger?.warn({ err, file }, 'MTA-STS: could not save the policy cache');
    }
  }

  /** Reads what save() wrote; a policy past its max_age, or a file that does not parse, is left out. */
  private load(file: string): void {
    let saved: SavedPolicy[];
    try {
      saved = JSON.parse(readFileSync(file, 'utf8')) as SavedPolicy[];
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') this.options.logger?.warn({ err, file }, 'MTA-STS: policy cache unreadable; policies are fetched again');
      return;
    }
    const now = this.now();
    for (const p of Array.isArray(saved) ? saved : []) {
      if (!(p.expiresAt > now)) continue;
      try {
        const policy = parseStsPolicy(p.lines.join('\n'));
        // Checked (id, refresh) at first use, in the background: a restart does not hold deliveries up.
        this.entries.set(p.domain, { result: { kind: 'policy', policy, id: p.id }, expiresAt: p.expiresAt, checkAt: now, refetchAt: p.refetchAt });
      } catch {
        // A policy that no longer parses is not enforced from a file: it is fetched again.
      }
    }
  }

  private async fetch(domain: string): Promise<StsPolicy> {
    const port = this.options.policyPort && this.options.policyPort !== 443 ? `:${this.options.policyPort}` : '';
    const answer = await httpsRequest(`https://mta-sts.${domain}${port}/.well-known/mta-sts.txt`, {
      method: 'GET',
      caFile: this.options.config.caFile,
      timeoutMs: this.options.config.fetchTimeoutMs,
      maxBytes: this.options.config.maxPolicySize,
      dns: this.options.dns,
    });
    // RFC 8461 3.3: 200 only, redirects are not followed.
    if (answer.status !== 200) throw Object.assign(new Error(`policy host answered HTTP ${answer.status}`), { code: 'ESTSFETCH' });
    if (!/^text\/plain\s*(;|$)/i.test(answer.contentType)) throw Object.assign(new Error(`policy served as "${answer.contentType}", not text/plain`), { code: 'ESTSPOLICY' });
    return parseStsPolicy(answer.body.toString('utf8'));
  }
}

interface SavedPolicy {
  domain: string;
  id: string;
  lines: string[];
  expiresAt: number;
  refetchAt: number;
}

function failureType(err: unknown): StsFetchFailure {
  if (errorCode(err) === 'ESTSPOLICY') return 'sts-policy-invalid';
  const cause = (err as { cause?: unknown }).cause;
  if (CERT_ERRORS.test(errorCode(cause) ?? '')) return 'sts-webpki-invalid';
  return 'sts-policy-fetch-error';
}
