// TXT records (`_mta-sts.<domain>`, `_smtp._tls.<domain>`) and host addresses
// (the MTA-STS policy host) through the MTA's configured resolver.
//
// Why Node's Resolver and not dns-query.ts: that raw client exists because the
// MX cache needs TTLs and the SOA of negative answers. Neither matters here:
// an MTA-STS policy lives for its max_age and is re-checked by its id, and a
// TLS-RPT rua is read once a day. The router already points a Resolver at
// `resolver.servers` for A/AAAA; this does the same, so every lookup the MTA
// makes goes to the same servers.

import { Resolver } from 'node:dns/promises';
import { VolleyError } from '../../../shared/errors';

/** Answers that say "nothing published", as opposed to "could not ask". */
const ABSENT = new Set(['ENODATA', 'ENOTFOUND']);

export class DnsTxt {
  private readonly resolver: Resolver;

  /** `servers`: "ip", "ip:port"; the system's when empty (as the router). */
  constructor(servers: string[], options: { timeoutMs?: number; tries?: number } = {}) {
    this.resolver = new Resolver({ timeout: options.timeoutMs ?? 5000, tries: options.tries ?? 2 });
    if (servers.length > 0) this.resolver.setServers(servers);
  }

  /** The TXT records of `name` (each a list of chunks), [] when none is published; throws EDNSTXT when the lookup fails. */
  async txt(name: string): Promise<string[][]> {
    try {
      return await this.resolver.resolveTxt(name);
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'ERROR';
      if (ABSENT.has(code)) return [];
      throw new VolleyError('EDNSTXT', `TXT lookup of ${name} failed (${code})`, { cause: err });
    }
  }

  /** The first address of `host` (IPv4 first), for connecting to a policy or report host. */
  async address(host: string): Promise<{ address: string; family: 4 | 6 }> {
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(host), this.resolver.resolve6(host)]);
    if (v4.status === 'fulfilled' && v4.value.length > 0) return { address: v4.value[0], family: 4 };
    if (v6.status === 'fulfilled' && v6.value.length > 0) return { address: v6.value[0], family: 6 };
    throw new VolleyError('EDNSADDR', `no address for ${host}`);
  }
}
