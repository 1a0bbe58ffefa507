// The TLSA lookup over DNS (RFC 7672 2.2): asks the configured resolver, with
// the DO bit, for the MX host's addresses and then its TLSA records, and
// trusts an answer only when the resolver set AD (it validated it). The
// resolver must be a DNSSEC-validating one the MTA trusts (on loopback or
// over a trusted link): AD from anyone else means nothing.
import { isIP } from 'node:net';
import type { TlsaRecord } from '../../../shared/smtp/connector';
import { VolleyError } from '../../../shared/errors';
import { DnsQueryError, queryDns, typeName, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_TLSA, type DnsAnswer } from '../routing/dns-query';
import type { TlsaAnswer, TlsaLookup } from './tlsa-lookup';

export interface DnsTlsaLookupOptions {
  /** The validating resolver(s): "ip", "ip:port" or "[v6]:port". */
  servers: string[];
  /** Per-try timeout of one query, ms (default 5000). */
  timeoutMs?: number;
  /** Tries per server (default 2). */
  tries?: number;
  /**
   * Answers are reused for their DNS TTL, clamped to [minCacheTtlMs,
   * cacheTtlMs] (defaults 5 s and 1 h, as the MX cache); failures are not
   * kept (the policy defers, and the retry asks again).
   */
  cacheTtlMs?: number;
  minCacheTtlMs?: number;
  now?: () => number;
}

export interface DnsTlsaResult extends TlsaAnswer {
  /**
   * The name the records were found at (the TLSA base domain, RFC 7672
   * 2.2.3): the MX host, or its CNAME-expanded name. DANE-TA checks the
   * certificate's names against it and the MX host.
   */
  baseDomain?: string;
  /** How long the answer holds, seconds: minimum TTL of the address, CNAME and TLSA records used, negative answers by their SOA (RFC 2308). */
  ttl?: number;
}

/**
 * Why no answer can be trusted either way; the policy defers on it, never
 * falls back to clear text. EDNSSECBOGUS: the resolver said (RFC 8914 extended
 * error) that DNSSEC validation failed. ETLSALOOKUP: any other failure
 * (SERVFAIL without that explanation, timeout, refused, unreachable).
 */
export class TlsaLookupError extends VolleyError {
  constructor(
    code: 'EDNSSECBOGUS' | 'ETLSALOOKUP',
    message: string,
    /** The DNS error under it (ESERVFAIL, ETIMEOUT, …). */
    readonly dnsCode: string,
    cause?: unknown,
  ) {
    super(code, message, { cause });
    this.name = 'TlsaLookupError';
  }
}

/** RFC 8914 info codes that name a DNSSEC failure (1-2, 5-12: unsupported algorithm or digest, indeterminate, bogus, expired, not yet valid, DNSKEY/RRSIG/NSEC missing, no zone key bit). */
const DNSSEC_EDE = new Set([1, 2, 5, 6, 7, 8, 9, 10, 11, 12]);

const MAX_CACHE_ENTRIES = 10_000;

export class DnsTlsaLookup implements TlsaLookup {
  private readonly servers: string[];
  private readonly timeoutMs: number;
  private readonly tries: number;
  private readonly maxMs: number;
  private readonly minMs: number;
  private readonly now: () => number;
  private readonly cache = new Map<string, { result: DnsTlsaResult; expires: number }>();
  /** Concurrent lookups of one host and port share one set of queries. */
  private readonly inflight = new Map<string, Promise<DnsTlsaResult>>();

  constructor(options: DnsTlsaLookupOptions) {
    this.servers = options.servers;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.tries = options.tries ?? 2;
    this.maxMs = options.cacheTtlMs ?? 3_600_000;
    this.minMs = Math.min(options.minCacheTtlMs ?? 5_000, this.maxMs);
    this.now = options.now ?? Date.now;
  }

  /** The TLSA answer for `host` (how: resolve() below), reused while its TTL lasts. */
  async lookup(host: string, port: number): Promise<DnsTlsaResult> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TlsaLookupError('ETLSALOOKUP', `bad port ${port} for the TLSA lookup of ${host}`, 'EBADNAME');
    const name = host.trim().toLowerCase().replace(/\.$/, '');
    // An address literal has no name to hang TLSA records on.
    if (isIP(name) || name.startsWith('[')) return insecure(`${host} is an address literal`);
    const key = `${port} ${name}`;
    const cached = this.cache.get(key);
    if (cached && cached.expires > this.now()) return cached.result;
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const p = this.resolve(name, port)
      .then((result) => {
        this.store(key, result);
        return result;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private store(key: string, result: DnsTlsaResult): void {
    const now = this.now();
    const ms = Math.min(this.maxMs, Math.max(this.minMs, (result.ttl ?? 0) * 1000));
    if (this.cache.size >= MAX_CACHE_ENTRIES) {
      for (const [k, v] of this.cache) if (v.expires <= now) this.cache.delete(k);
      // Still full: drop the oldest insertions.
      for (const k of this.cache.keys()) {
        if (this.cache.size < MAX_CACHE_ENTRIES) break;
        this.cache.delete(k);
      }
    }
    this.cache.delete(key);
    this.cache.set(key, { result, expires: now + ms });
  }

  /**
   * 1. The host's A and AAAA (RFC 7672 2.2.2): DANE applies when the host is
   *    in a signed zone, i.e. its address answer is secure, or it is a CNAME
   *    chain whose first link is secure (the rest may lead into an unsigned
   *    zone; then only the host's own name can carry TLSA records).
   * 2. `_<port>._tcp.<name>` TLSA: with a chain secure end to end, first at
   *    the CNAME-expanded name, then, if none is there, at the host name; else
   *    at the host name only (RFC 7672 2.2.3). The first secure non-empty
   *    RRset wins; CNAMEs in the TLSA answer itself are followed (the
   *    resolver's chain, secure as a whole or not at all).
   * 3. Securely no TLSA at any candidate: secure and empty. An insecure
   *    answer anywhere (and nothing secure found): not DANE.
   */
  private async resolve(name: string, port: number): Promise<DnsTlsaResult> {
    const [a, aaaa] = await Promise.all([this.ask(name, TYPE_A), this.ask(name, TYPE_AAAA)]);
    let ttl = minTtl(a.ttl ?? a.negativeTtl, aaaa.ttl ?? aaaa.negativeTtl);
    let bases: string[];
    if (a.authenticated && aaaa.authenticated) {
      bases = a.canonicalName === name ? [name] : [a.canonicalName, name];
    } else {
      const why = `the addresses of ${name} are not DNSSEC-validated`;
      if (a.canonicalName === name && aaaa.canonicalName === name) return insecure(why, ttl);
      const first = await this.ask(name, TYPE_CNAME);
      if (!first.authenticated || first.records.length === 0) return insecure(`${why} (its CNAME is not signed)`, ttl);
      bases = [name];
    }

    let unsigned: string | undefined;
    for (const base of bases) {
      const tlsa = await this.ask(`_${port}._tcp.${base}`, TYPE_TLSA);
      if (!tlsa.authenticated) {
        unsigned ??= `the TLSA answer for _${port}._tcp.${base} is not DNSSEC-validated`;
        ttl = minTtl(ttl, tlsa.ttl ?? tlsa.negativeTtl);
        continue;
      }
      if (tlsa.records.length > 0) return { secure: true, records: tlsa.records.map((r) => parseTlsa(r.data)), baseDomain: base, ttl: minTtl(ttl, tlsa.ttl) };
      ttl = minTtl(ttl, tlsa.negativeTtl);
    }
    return unsigned ? insecure(unsigned, ttl) : { secure: true, records: [], ttl };
  }

  private async ask(name: string, type: number): Promise<DnsAnswer> {
    const what = `${typeName(type)} ${name}`;
    try {
      return await queryDns(name, type, this.servers, { timeoutMs: this.timeoutMs, tries: this.tries, dnssec: true });
    } catch (err) {
      if (!(err instanceof DnsQueryError)) throw err;
      const bogus = err.code === 'ESERVFAIL' && err.extendedError !== undefined && DNSSEC_EDE.has(err.extendedError.infoCode);
      throw new TlsaLookupError(bogus ? 'EDNSSECBOGUS' : 'ETLSALOOKUP', `${bogus ? 'DNSSEC validation failed' : 'lookup failed'} for ${what}: ${err.message}`, err.code, err);
    }
  }
}

/** Not DANE, and why (for the logs). */
function insecure(reason: string, ttl?: number): DnsTlsaResult {
  return ttl === undefined ? { secure: false, records: [], reason } : { secure: false, records: [], reason, ttl };
}

function minTtl(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.min(a, b);
}

/**
 * TLSA RDATA: usage, selector, matching type, association data. A record too
 * short to hold them is kept as an unusable one (usage 255), so that a
 * malformed RRset reads as "TLSA present, none usable" (encrypt without
 * authentication, RFC 7672 2.2) rather than as no TLSA at all.
 */
export function parseTlsa(data: Buffer): TlsaRecord {
  if (data.length < 3) return { usage: 255, selector: 255, matchingType: 255, data: '' };
  return { usage: data[0], selector: data[1], matchingType: data[2], data: data.subarray(3).toString('hex') };
}

/**
 * The records SMTP can use (RFC 7672 3.1): DANE-TA(2) and DANE-EE(3) usages
 * (PKIX-TA/EE, 0 and 1, are not for SMTP), selector Cert(0) or SPKI(1), and
 * matching Full(0) or a SHA-256(1)/SHA-512(2) digest of the right length.
 */
export function usableTlsa(records: TlsaRecord[]): TlsaRecord[] {
  const digestHex: Record<number, number> = { 1: 64, 2: 128 };
  return records.filter(
    (r) =>
      (r.usage === 2 || r.usage === 3) &&
      (r.selector === 0 || r.selector === 1) &&
      (r.matchingType === 0 ? r.data.length > 0 : r.data.length === digestHex[r.matchingType]),
  );
}
