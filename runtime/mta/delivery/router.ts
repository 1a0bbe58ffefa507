import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { RouteConfig } from '../../shared/config/types';

export interface MxHost {
  host: string;
  port: number;
  preference: number;
  /** Addresses to try, in order (resolved through the configured resolver). */
  ips: string[];
}

export type Route = { kind: 'hosts'; hosts: MxHost[]; source: 'static' | 'mx' | 'implicit' } | { kind: 'null-mx' } | { kind: 'no-route'; temporary: boolean; reason: string };

export interface RouterOptions {
  routes: RouteConfig[];
  /** DNS servers as "ip" or "ip:port"; the system resolver when empty. */
  servers: string[];
  cacheTtlMs?: number;
  now?: () => number;
}

/**
 * Turns a recipient domain into the hosts to try: a static route (smarthost,
 * tests), else MX records by preference, else the implicit MX (the domain's own
 * address), and RFC 7505 null MX as a permanent refusal.
 */
export class Router {
  private readonly resolver = new Resolver({ timeout: 5000, tries: 2 });
  private routes = new Map<string, RouteConfig>();
  private readonly cache = new Map<string, { route: Route; expires: number }>();
  private readonly ttl: number;
  private readonly now: () => number;

  constructor(options: RouterOptions) {
    this.ttl = options.cacheTtlMs ?? 300_000;
    this.now = options.now ?? Date.now;
    this.apply(options.routes, options.servers);
  }

  apply(routes: RouteConfig[], servers: string[]): void {
    this.routes = new Map(routes.map((r) => [r.domain, r]));
    if (servers.length > 0) this.resolver.setServers(servers);
    this.cache.clear();
  }

  async resolve(domain: string): Promise<Route> {
    const d = domain.toLowerCase();
    const cached = this.cache.get(d);
    if (cached && cached.expires > this.now()) return cached.route;
    const route = await this.lookup(d);
    // A temporary failure is cached briefly so a broken resolver is retried soon.
    const ttl = route.kind === 'no-route' && route.temporary ? Math.min(this.ttl, 30_000) : this.ttl;
    this.cache.set(d, { route, expires: this.now() + ttl });
    return route;
  }

  private async lookup(domain: string): Promise<Route> {
    const stat = this.routes.get(domain) ?? this.routes.get('*');
    if (stat) return { kind: 'hosts', source: 'static', hosts: [{ host: stat.host, port: stat.port, preference: 0, ips: await this.addresses(stat.host) }] };
    let mx: { exchange: string; priority: number }[];
    try {
      mx = await this.resolver.resolveMx(domain);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENODATA' || code === 'ENOTFOUND') return this.implicit(domain, code === 'ENOTFOUND');
      return { kind: 'no-route', temporary: true, reason: `MX lookup for ${domain} failed: ${code ?? (err as Error).message}` };
    }
    if (mx.length === 1 && (mx[0].exchange === '' || mx[0].exchange === '.')) return { kind: 'null-mx' };
    const sorted = mx.filter((m) => m.exchange !== '' && m.exchange !== '.').sort((a, b) => a.priority - b.priority);
    const hosts: MxHost[] = [];
    for (const m of sorted) hosts.push({ host: m.exchange, port: 25, preference: m.priority, ips: await this.addresses(m.exchange) });
    const usable = hosts.filter((h) => h.ips.length > 0);
    if (usable.length === 0) return { kind: 'no-route', temporary: true, reason: `no address for any MX of ${domain}` };
    return { kind: 'hosts', source: 'mx', hosts: usable };
  }

  private async implicit(domain: string, nxdomain: boolean): Promise<Route> {
    const ips = nxdomain ? [] : await this.addresses(domain);
    if (ips.length === 0) return { kind: 'no-route', temporary: false, reason: `domain ${domain} has no MX and no address` };
    return { kind: 'hosts', source: 'implicit', hosts: [{ host: domain, port: 25, preference: 0, ips }] };
  }

  private async addresses(host: string): Promise<string[]> {
    if (isIP(host)) return [host];
    try {
      return await this.resolver.resolve4(host);
    } catch {
      try {
        return await this.resolver.resolve6(host);
      } catch {
        return [];
      }
    }
  }
}
