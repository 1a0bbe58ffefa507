import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { RouteConfig } from '../../../shared/config/types';
import { queryMx, type MxAnswer } from './dns-query';

export interface MxHost {
  host: string;
  port: number;
  preference: number;
  /** Addresses to try, in order (resolved through the configured resolver): IPv4 first, then IPv6. */
  ips: string[];
}

export type Route = { kind: 'hosts'; hosts: MxHost[]; source: 'static' | 'mx' | 'implicit' } | { kind: 'null-mx' } | { kind: 'no-route'; temporary: boolean; reason: string };

export interface RouterOptions {
  routes: RouteConfig[];
  /** DNS servers as "ip", "ip:port" or "[ipv6]:port"; the system resolver's servers when empty. */
  servers: string[];
  /**
   * Upper bound on how long an answer is cached, ms (default 1 h). Answers live
   * for their DNS TTL, clamped to [minCacheTtlMs, cacheTtlMs].
   */
  cacheTtlMs?: number;
  /** Lower bound on how long an answer is cached, ms (default 5 s). */
  minCacheTtlMs?: number;
  /** Per-try timeout of one DNS query, ms (default 5000). */
  timeoutMs?: number;
  /** Tries per DNS server (default 2). */
  tries?: number;
  now?: () => number;
}

/** A negative answer without an SOA to say how long it holds (RFC 2308 5) is kept this long, seconds. */
const NEGATIVE_TTL_S = 60;
/** A temporary failure (SERVFAIL, timeout, unreachable resolver) is kept this long, so the resolver is retried soon, seconds. */
const TEMPFAIL_TTL_S = 30;
const MAX_CACHE_ENTRIES = 10_000;

/** A route with how long it may be reused: `ttl` seconds, and whether it is a positive, negative or temporary answer. */
interface Resolved {
  route: Route;
  ttl: number;
}

interface Addresses {
  ips: string[];
  /** Min TTL of the addresses, or of the negative answer; seconds. */
  ttl: number;
  /** Set when no address came back: why, and whether that may change soon. */
  failure?: { temporary: boolean; reason: string };
  /** One family answered, the other failed temporarily. */
  partial?: boolean;
}

/**
 * Turns a recipient domain into the hosts to try: a static route (smarthost,
 * tests), else MX records by preference, else the implicit MX (the domain's own
 * address, RFC 5321 5.1), and RFC 7505 null MX as a permanent refusal.
 *
 * Answers are cached for their DNS TTL: the minimum TTL of the records used (MX,
 * CNAMEs, the addresses of the hosts kept), clamped to [5 s, 1 h]; negative
 * answers for the SOA minimum (or 60 s without SOA); temporary failures 30 s.
 * Concurrent lookups of one domain share one query.
 */
export class Router {
  private resolver!: Resolver;
  private routes = new Map<string, RouteConfig>();
  private readonly cache = new Map<string, { route: Route; expires: number }>();
  private readonly inflight = new Map<string, Promise<Route>>();
  /** Bumped by apply(): lookups started under an older configuration do not fill the cache. */
  private generation = 0;
  private readonly maxMs: number;
  private readonly minMs: number;
  private readonly timeoutMs: number;
  private readonly tries: number;
  private readonly now: () => number;

  constructor(options: RouterOptions) {
    this.maxMs = options.cacheTtlMs ?? 3_600_000;
    this.minMs = Math.min(options.minCacheTtlMs ?? 5_000, this.maxMs);
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.tries = options.tries ?? 2;
    this.now = options.now ?? Date.now;
    this.apply(options.routes, options.servers);
  }

  apply(routes: RouteConfig[], servers: string[]): void {
    this.routes = new Map(routes.map((r) => [normalize(r.domain), r]));
    // A fresh resolver, so emptying `servers` goes back to the system's servers.
    this.resolver = new Resolver({ timeout: this.timeoutMs, tries: this.tries });
    if (servers.length > 0) this.resolver.setServers(servers);
    this.generation++;
    this.cache.clear();
    this.inflight.clear();
  }

  async resolve(domain: string): Promise<Route> {
    const d = normalize(domain);
    const cached = this.cache.get(d);
    if (cached && cached.expires > this.now()) return cached.route;
    const pending = this.inflight.get(d);
    if (pending) return pending;
    const generation = this.generation;
    const p = this.lookup(d)
      .catch((err: unknown): Resolved => ({ route: { kind: 'no-route', temporary: true, reason: `routing ${d} failed: ${(err as Error).message}` }, ttl: TEMPFAIL_TTL_S }))
      .then(({ route, ttl }) => {
        if (generation === this.generation) {
          if (this.inflight.get(d) === p) this.inflight.delete(d);
          this.store(d, route, ttl);
        }
        return route;
      });
    this.inflight.set(d, p);
    return p;
  }

  private store(domain: string, route: Route, ttlSeconds: number): void {
    const now = this.now();
    const ms = Math.min(this.maxMs, Math.max(this.minMs, ttlSeconds * 1000));
    if (this.cache.size >= MAX_CACHE_ENTRIES) {
      for (const [k, v] of this.cache) if (v.expires <= now) this.cache.delete(k);
      // Still full: drop the oldest insertions.
      for (const k of this.cache.keys()) {
        if (this.cache.size < MAX_CACHE_ENTRIES) break;
        this.cache.delete(k);
      }
    }
    this.cache.delete(domain);
    this.cache.set(domain, { route, expires: now + ms });
  }

  private async lookup(domain: string): Promise<Resolved> {
    const stat = this.routes.get(domain) ?? this.routes.get('*');
    if (stat) {
      const a = await this.addresses(stat.host);
      if (a.failure) return { route: { kind: 'no-route', temporary: true, reason: `static route host ${stat.host} for ${domain}: ${a.failure.reason}` }, ttl: TEMPFAIL_TTL_S };
      return { route: { kind: 'hosts', source: 'static', hosts: [{ host: stat.host, port: stat.port, preference: 0, ips: a.ips }] }, ttl: a.ttl };
    }

    // An address literal ("[192.0.2.1]", RFC 5321 4.1.3) is its own destination.
    if (domain.startsWith('[') && domain.endsWith(']')) {
      const ip = domain.slice(1, -1).replace(/^ipv6:/, '');
      if (isIP(ip)) return { route: { kind: 'hosts', source: 'implicit', hosts: [{ host: domain, port: 25, preference: 0, ips: [ip] }] }, ttl: Infinity };
    }
    let answer: MxAnswer;
    try {
      answer = await queryMx(domain, this.resolver.getServers(), { timeoutMs: this.timeoutMs, tries: this.tries });
    } catch (err) {
      const code = (err as { code?: string }).code;
      // A name that cannot be asked about will not become askable later.
      return { route: { kind: 'no-route', temporary: code !== 'EBADNAME', reason: `MX lookup for ${domain} failed (${code ?? 'error'}): ${(err as Error).message}` }, ttl: TEMPFAIL_TTL_S };
    }
    const negativeTtl = answer.negativeTtl ?? NEGATIVE_TTL_S;
    if (answer.rcode === 'NXDOMAIN') return { route: { kind: 'no-route', temporary: false, reason: `domain ${domain} does not exist` }, ttl: negativeTtl };
    if (answer.mx.length === 0) return this.implicit(domain, negativeTtl);
    const mxTtl = answer.ttl ?? NEGATIVE_TTL_S;
    if (answer.mx.length === 1 && answer.mx[0].exchange === '') return { route: { kind: 'null-mx' }, ttl: mxTtl };

    // Array.prototype.sort is stable: equal preferences keep the server's order.
    const sorted = answer.mx.filter((m) => m.exchange !== '').sort((a, b) => a.preference - b.preference);
    const found = await Promise.all(sorted.map((m) => this.addresses(m.exchange)));
    const hosts: MxHost[] = [];
    let ttl = mxTtl;
    let degraded = false;
    const reasons: string[] = [];
    sorted.forEach((m, i) => {
      const a = found[i];
      if (a.failure) {
        // An MX host without an address is skipped; if that may be transient, recheck soon.
        if (a.failure.temporary) degraded = true;
        reasons.push(`${m.exchange}: ${a.failure.reason}`);
        return;
      }
      if (a.partial) degraded = true;
      hosts.push({ host: m.exchange, port: 25, preference: m.preference, ips: a.ips });
      ttl = Math.min(ttl, a.ttl);
    });
    if (hosts.length === 0) return { route: { kind: 'no-route', temporary: true, reason: `no address for any MX of ${domain} (${reasons.join('; ')})` }, ttl: TEMPFAIL_TTL_S };
    return { route: { kind: 'hosts', source: 'mx', hosts }, ttl: degraded ? Math.min(ttl, TEMPFAIL_TTL_S) : ttl };
  }

  /** No MX: the domain's own address is the implicit MX (RFC 5321 5.1). */
  private async implicit(domain: string, mxNegativeTtl: number): Promise<Resolved> {
    const a = await this.addresses(domain);
    if (a.failure?.temporary) return { route: { kind: 'no-route', temporary: true, reason: `domain ${domain} has no MX and its address lookup failed: ${a.failure.reason}` }, ttl: TEMPFAIL_TTL_S };
    if (a.failure) return { route: { kind: 'no-route', temporary: false, reason: `domain ${domain} has no MX and no address` }, ttl: Math.min(mxNegativeTtl, a.ttl) };
    // The route rests on both the absence of MX and the addresses.
    const ttl = Math.min(mxNegativeTtl, a.ttl, a.partial ? TEMPFAIL_TTL_S : Infinity);
    return { route: { kind: 'hosts', source: 'implicit', hosts: [{ host: domain, port: 25, preference: 0, ips: a.ips }] }, ttl };
  }

  /** A and AAAA of `host` through the configured resolver, with TTLs. */
  private async addresses(host: string): Promise<Addresses> {
    const literal = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
    if (isIP(literal)) return { ips: [literal], ttl: Infinity };
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(host, { ttl: true }), this.resolver.resolve6(host, { ttl: true })]);
    const records = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    const codes = [v4, v6].map((r) => (r.status === 'rejected' ? ((r.reason as { code?: string }).code ?? 'ERROR') : undefined));
    // No such name / no such record are answers; anything else (SERVFAIL, timeout, refused) may pass.
    const temporary = codes.some((c) => c !== undefined && c !== 'ENODATA' && c !== 'ENOTFOUND');
    if (records.length > 0) return { ips: records.map((r) => r.address), ttl: Math.min(...records.map((r) => r.ttl)), partial: temporary };
    const reason = codes.every((c) => c === 'ENOTFOUND') ? 'no such domain' : temporary ? `address lookup failed (${codes.filter(Boolean).join(', ')})` : 'no A or AAAA record';
    return { ips: [], ttl: NEGATIVE_TTL_S, failure: { temporary, reason } };
  }
}

function normalize(domain: string): string {
  const d = domain.trim().toLowerCase();
  return d.endsWith('.') ? d.slice(0, -1) : d;
}
