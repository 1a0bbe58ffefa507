// TLSA answers kept for their DNS lifetime, so a destination with DANE costs
// one lookup per MX host and TTL rather than one per connection. Wraps any
// TlsaLookup (engineer D's DNS one reports a `ttl`; without one an answer is
// kept a minute). A failed lookup is kept briefly too: the MX is deferred on
// it either way, and a bogus zone should not cost a query per connection.

import type { TlsaAnswer, TlsaLookup } from './tlsa-lookup';

const MIN_MS = 5_000;
const MAX_MS = 3_600_000;
const DEFAULT_MS = 60_000;
const FAILED_MS = 30_000;
const MAX_ENTRIES = 10_000;

export function cachedTlsa(lookup: TlsaLookup, now: () => number = Date.now): TlsaLookup {
  const cache = new Map<string, { answer?: TlsaAnswer; error?: unknown; expires: number }>();
  const inflight = new Map<string, Promise<TlsaAnswer>>();
  return {
    lookup(host, port) {
      const key = `${host.toLowerCase()}:${port}`;
      const hit = cache.get(key);
      if (hit && hit.expires > now()) return hit.error !== undefined ? Promise.reject(hit.error) : Promise.resolve(hit.answer!);
      const pending = inflight.get(key);
      if (pending) return pending;
      const store = (entry: { answer?: TlsaAnswer; error?: unknown }, ms: number): void => {
        if (cache.size >= MAX_ENTRIES) cache.delete(cache.keys().next().value!);
        cache.delete(key);
        cache.set(key, { ...entry, expires: now() + ms });
      };
      const p = lookup
        .lookup(host, port)
        .then(
          (answer) => {
            const ttl = (answer as TlsaAnswer & { ttl?: number }).ttl;
            store({ answer }, ttl === undefined ? DEFAULT_MS : Math.min(MAX_MS, Math.max(MIN_MS, ttl * 1000)));
            return answer;
          },
          (error: unknown) => {
            store({ error }, FAILED_MS);
            throw error;
          },
        )
        .finally(() => inflight.delete(key));
      inflight.set(key, p);
      return p;
    },
  };
}
