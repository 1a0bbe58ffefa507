import { cachedTlsa } from '../../../../../runtime/mta/delivery/tls-policy/tlsa-cache';
import type { TlsaAnswer, TlsaLookup } from '../../../../../runtime/mta/delivery/tls-policy/tlsa-lookup';

// A counting lookup behind the cache, and an injected clock.
function counting(answer: (host: string) => Promise<TlsaAnswer & { ttl?: number }>): TlsaLookup & { calls: string[] } {
  const calls: string[] = [];
  return { calls, lookup: (host, port) => (calls.push(`${host}:${port}`), answer(host)) };
}

test('an answer is kept for its TTL (clamped to 5 s .. 1 h), a minute without one; concurrent lookups share one query', async () => {
  let clock = 0;
  const inner = counting((host) => Promise.resolve({ secure: true, records: [], ...(host === 'ttl.test' ? { ttl: 300 } : host === 'tiny.test' ? { ttl: 1 } : {}) }));
  const tlsa = cachedTlsa(inner, () => clock);
  await Promise.all([tlsa.lookup('ttl.test', 25), tlsa.lookup('TTL.test', 25), tlsa.lookup('plain.test', 25), tlsa.lookup('tiny.test', 25)]);
  expect(inner.calls).toEqual(['ttl.test:25', 'plain.test:25', 'tiny.test:25']);
  clock = 4_999;
  await Promise.all(['ttl.test', 'plain.test', 'tiny.test'].map((h) => tlsa.lookup(h, 25)));
  expect(inner.calls).toHaveLength(3);
  clock = 5_000; // tiny.test: 1 s TTL, kept the 5 s minimum
  await Promise.all(['ttl.test', 'plain.test', 'tiny.test'].map((h) => tlsa.lookup(h, 25)));
  expect(inner.calls.slice(3)).toEqual(['tiny.test:25']);
  clock = 60_000;
  await Promise.all(['ttl.test', 'plain.test'].map((h) => tlsa.lookup(h, 25)));
  expect(inner.calls.slice(4)).toEqual(['plain.test:25']);
  clock = 300_000;
  await tlsa.lookup('ttl.test', 25);
  expect(inner.calls.slice(5)).toEqual(['ttl.test:25']);
  await tlsa.lookup('ttl.test', 465); // another port is another name (_465._tcp)
  expect(inner.calls.slice(6)).toEqual(['ttl.test:465']);
});

test('a failed lookup fails again for 30 s without a query, then is asked again', async () => {
  let clock = 0;
  const inner = counting(() => Promise.reject(Object.assign(new Error('bogus'), { code: 'EDNSSECBOGUS' })));
  const tlsa = cachedTlsa(inner, () => clock);
  await expect(tlsa.lookup('bogus.test', 25)).rejects.toMatchObject({ code: 'EDNSSECBOGUS' });
  clock = 29_999;
  await expect(tlsa.lookup('bogus.test', 25)).rejects.toMatchObject({ code: 'EDNSSECBOGUS' });
  expect(inner.calls).toHaveLength(1);
  clock = 30_000;
  await expect(tlsa.lookup('bogus.test', 25)).rejects.toThrow('bogus');
  expect(inner.calls).toHaveLength(2);
});
