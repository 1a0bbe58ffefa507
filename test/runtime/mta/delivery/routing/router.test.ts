import { createSocket, type Socket } from 'node:dgram';
import { Router, type Route } from '../../../../../runtime/mta/delivery/routing/router';
import { parseServer, queryMx } from '../../../../../runtime/mta/delivery/routing/dns-query';
import { freeUdpPort, rr, startDnsmasq, type Dnsmasq } from '../../../../helpers/dnsmasq';
import { waitUntil } from '../../../../helpers/proxy-fixtures';

// Every test talks to a private dnsmasq on 127.0.0.1 that knows only these records.
// `--local=/test/` makes it answer NXDOMAIN / NODATA for the rest of .test
// (instead of REFUSED, as it has no upstream).
const ZONE = [
  '--local=/test/',
  '--local-ttl=300',
  // preference order differs from declaration order
  rr.mx('pref.test', 'mx-b.pref.test', 20),
  rr.mx('pref.test', 'mx-c.pref.test', 30),
  rr.mx('pref.test', 'mx-a.pref.test', 10),
  rr.host('mx-a.pref.test', '127.0.1.1'),
  rr.host('mx-b.pref.test', '127.0.1.2'),
  rr.host('mx-c.pref.test', '127.0.1.3'),
  // two MX, the first with two addresses (v4 and v6), plus one MX without any address in between
  rr.mx('two.test', 'mx1.two.test', 10),
  rr.mx('two.test', 'ghost.two.test', 15),
  rr.mx('two.test', 'mx2.two.test', 20),
  rr.host('mx1.two.test', '127.0.2.1'),
  rr.host('mx1.two.test', '127.0.2.2'),
  rr.host('mx1.two.test', '::1'),
  rr.host('mx2.two.test', '127.0.2.3'),
  // implicit MX: only an address
  rr.host('implicit.test', '127.0.3.1'),
  // null MX (RFC 7505): dnsmasq accepts "." as the target and sends the root name
  rr.mx('nullmx.test', '.', 0),
  // a name that exists (TXT) but has neither MX nor address
  rr.txt('nothing.test', 'v=spf1 -all'),
  // MX hosts none of which has an address
  rr.mx('noaddr.test', 'void1.noaddr.test', 10),
  rr.mx('noaddr.test', 'void2.noaddr.test', 20),
  // an alias of pref.test
  rr.cname('alias.test', 'pref.test'),
  // a smarthost for static routes
  rr.host('smarthost.test', '127.0.9.9'),
];

let dns: Dnsmasq;
beforeAll(async () => {
  dns = await startDnsmasq(ZONE);
});

const router = (extra: Partial<ConstructorParameters<typeof Router>[0]> = {}): Router =>
  new Router({ routes: [], servers: [dns.server], timeoutMs: 500, tries: 1, ...extra });

const hostsOf = (route: Route): [string, number, string[]][] => {
  if (route.kind !== 'hosts') throw new Error(`expected hosts, got ${JSON.stringify(route)}`);
  return route.hosts.map((h) => [h.host, h.preference, h.ips]);
};

describe('Router against dnsmasq', () => {
  it('orders MX hosts by preference, each with its addresses, port 25', async () => {
    const route = await router().resolve('pref.test');
    expect(route).toMatchObject({ kind: 'hosts', source: 'mx' });
    expect(hostsOf(route)).toEqual([
      ['mx-a.pref.test', 10, ['127.0.1.1']],
      ['mx-b.pref.test', 20, ['127.0.1.2']],
      ['mx-c.pref.test', 30, ['127.0.1.3']],
    ]);
    expect(route.kind === 'hosts' && route.hosts.every((h) => h.port === 25)).toBe(true);
  });

  it('keeps the order of two MX with addresses (IPv4 before IPv6) and skips an MX host without address', async () => {
    const route = await router().resolve('Two.Test.');
    const hosts = hostsOf(route);
    expect(hosts.map(([h, pref]) => [h, pref])).toEqual([
      ['mx1.two.test', 10],
      ['mx2.two.test', 20],
    ]);
    // Within one RRset the server chooses the order (dnsmasq rotates); the IPv6 address comes after both IPv4 ones.
    expect(hosts[0][2].slice(0, 2).sort()).toEqual(['127.0.2.1', '127.0.2.2']);
    expect(hosts[0][2][2]).toBe('::1');
    expect(hosts[1][2]).toEqual(['127.0.2.3']);
  });

  it('follows a CNAME to the MX records', async () => {
    expect(hostsOf(await router().resolve('alias.test')).map(([h]) => h)).toEqual(['mx-a.pref.test', 'mx-b.pref.test', 'mx-c.pref.test']);
  });

  it('uses the implicit MX (the domain\'s own address) when there is no MX', async () => {
    const route = await router().resolve('implicit.test');
    expect(route).toMatchObject({ kind: 'hosts', source: 'implicit' });
    expect(hostsOf(route)).toEqual([['implicit.test', 0, ['127.0.3.1']]]);
  });

  it('reports a null MX as null-mx', async () => {
    expect(await router().resolve('nullmx.test')).toEqual({ kind: 'null-mx' });
  });

  it('NXDOMAIN is a permanent no-route', async () => {
    expect(await router().resolve('does-not-exist.test')).toMatchObject({ kind: 'no-route', temporary: false });
  });

  it('a domain with neither MX nor address is a permanent no-route', async () => {
    expect(await router().resolve('nothing.test')).toMatchObject({ kind: 'no-route', temporary: false, reason: expect.stringContaining('no MX and no address') });
  });

  it('MX hosts none of which has an address: temporary no-route', async () => {
    expect(await router().resolve('noaddr.test')).toMatchObject({ kind: 'no-route', temporary: true, reason: expect.stringContaining('no address for any MX') });
  });

  it('a refusing resolver (REFUSED: dnsmasq has no upstream for .example) is a temporary no-route', async () => {
    expect(await router().resolve('example.example')).toMatchObject({ kind: 'no-route', temporary: true, reason: expect.stringContaining('EREFUSED') });
  });

  it('a resolver port where nothing listens is a temporary no-route', async () => {
    const port = await freeUdpPort();
    // Usually the port-unreachable answers (ECONNREFUSED) at once; the kernel rate-limits those ICMP messages, so
    // under a burst of other DNS tests it may be the timeout that answers. Either way: temporary, never permanent.
    const route = await new Router({ routes: [], servers: [`127.0.0.1:${port}`], timeoutMs: 300, tries: 1 }).resolve('pref.test');
    expect(route).toMatchObject({ kind: 'no-route', temporary: true, reason: expect.stringMatching(/ECONNREFUSED|no answer/) });
  });

  it('a resolver that never answers times out into a temporary no-route', async () => {
    const silent: Socket = createSocket('udp4');
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()));
    let asked = 0;
    silent.on('message', () => asked++);
    try {
      const t0 = Date.now();
      const route = await new Router({ routes: [], servers: [`127.0.0.1:${silent.address().port}`], timeoutMs: 200, tries: 2 }).resolve('pref.test');
      expect(route).toMatchObject({ kind: 'no-route', temporary: true, reason: expect.stringContaining('no answer') });
      // Both tries, each waited out (a lower bound only: load can make it later, never sooner).
      expect(Date.now() - t0).toBeGreaterThanOrEqual(390);
      await waitUntil(() => asked >= 2, 10_000, () => `${asked} queries reached the silent resolver`);
    } finally {
      silent.close();
    }
  });

  it('a static route wins over MX; its host name resolves through the same resolver; "*" matches every other domain', async () => {
    const r = router({
      routes: [
        { domain: 'Pref.Test', host: 'smarthost.test', port: 2525 },
        { domain: '*', host: '127.0.0.7', port: 2526 },
      ],
    });
    expect(await r.resolve('pref.test')).toEqual({ kind: 'hosts', source: 'static', hosts: [{ host: 'smarthost.test', port: 2525, preference: 0, ips: ['127.0.9.9'] }] });
    for (const d of ['two.test', 'nullmx.test', 'does-not-exist.test', 'anything.example']) {
      expect(await r.resolve(d)).toEqual({ kind: 'hosts', source: 'static', hosts: [{ host: '127.0.0.7', port: 2526, preference: 0, ips: ['127.0.0.7'] }] });
    }
  });

  it('a static route whose host has no address is a temporary no-route', async () => {
    const r = router({ routes: [{ domain: '*', host: 'missing.test', port: 25 }] });
    expect(await r.resolve('pref.test')).toMatchObject({ kind: 'no-route', temporary: true });
  });

  it('apply() replaces routes and servers and forgets cached answers', async () => {
    const r = router({ routes: [{ domain: '*', host: '127.0.0.7', port: 25 }] });
    expect(await r.resolve('implicit.test')).toMatchObject({ source: 'static' });
    r.apply([], [dns.server]);
    expect(await r.resolve('implicit.test')).toMatchObject({ source: 'implicit' });
  });

  it('an address literal domain routes to that address', async () => {
    expect(hostsOf(await router().resolve('[127.0.0.5]'))).toEqual([['[127.0.0.5]', 0, ['127.0.0.5']]]);
  });

  it('queryMx reports MX TTLs and follows CNAMEs', async () => {
    const a = await queryMx('alias.test', [dns.server], { timeoutMs: 500, tries: 1 });
    expect(a.rcode).toBe('NOERROR');
    expect(a.ttl).toBe(300);
    expect(a.mx.map((m) => [m.exchange, m.preference, m.ttl]).sort()).toEqual([
      ['mx-a.pref.test', 10, 300],
      ['mx-b.pref.test', 20, 300],
      ['mx-c.pref.test', 30, 300],
    ]);
    expect((await queryMx('nullmx.test', [dns.server], { timeoutMs: 500, tries: 1 })).mx).toEqual([{ exchange: '', preference: 0, ttl: 300 }]);
  });

  it('parses server addresses as node\'s Resolver lists them', () => {
    expect(parseServer('127.0.0.1')).toEqual({ host: '127.0.0.1', port: 53 });
    expect(parseServer('127.0.0.1:5353')).toEqual({ host: '127.0.0.1', port: 5353 });
    expect(parseServer('::1')).toEqual({ host: '::1', port: 53 });
    expect(parseServer('[::1]:5353')).toEqual({ host: '::1', port: 5353 });
  });

  it('queryMx falls back to TCP when the UDP answer is truncated', async () => {
    // 60 MX with long names: far beyond the 1232-byte EDNS payload.
    const many = Array.from({ length: 60 }, (_, i) => rr.mx('big.test', `mail-exchanger-number-${i}.some-long-provider-name.test`, i));
    const big = await startDnsmasq(['--local=/test/', ...many]);
    const a = await queryMx('big.test', [big.server], { timeoutMs: 1000, tries: 1 });
    expect(a.mx).toHaveLength(60);
    expect(big.queries()).toEqual(['MX big.test', 'MX big.test']); // the UDP try, then the TCP one
    await big.stop();
  });
});

describe('Router cache honours DNS TTLs', () => {
  const T0 = 1_000_000;
  let clock = T0;
  const now = (): number => clock;
  const at = (seconds: number): void => {
    clock = T0 + seconds * 1000;
  };
  const mxQueries = (d: Dnsmasq, name: string): number => d.queries().filter((q) => q === `MX ${name}`).length;

  it('reuses an answer for min(MX TTL, address TTLs), then asks again and sees the change', async () => {
    // MX TTL 120 s (local-ttl), the MX host's address TTL 40 s: the route lives 40 s.
    const v1 = ['--local=/test/', '--local-ttl=120', rr.mx('ttl.test', 'mx.ttl.test', 10), rr.host('mx.ttl.test', '127.0.4.1', 40)];
    const d = await startDnsmasq(v1);
    const r = new Router({ routes: [], servers: [d.server], timeoutMs: 500, tries: 1, now });
    at(0);
    expect(hostsOf(await r.resolve('ttl.test'))).toEqual([['mx.ttl.test', 10, ['127.0.4.1']]]);
    expect(mxQueries(d, 'ttl.test')).toBe(1);

    // Same port, other answers: only a fresh query can see them.
    await d.restart(['--local=/test/', '--local-ttl=120', rr.mx('ttl.test', 'mx2.ttl.test', 10), rr.host('mx2.ttl.test', '127.0.4.2', 600)]);
    at(39);
    expect(hostsOf(await r.resolve('ttl.test'))).toEqual([['mx.ttl.test', 10, ['127.0.4.1']]]);
    expect(mxQueries(d, 'ttl.test')).toBe(0);
    at(41);
    expect(hostsOf(await r.resolve('ttl.test'))).toEqual([['mx2.ttl.test', 10, ['127.0.4.2']]]);
    expect(mxQueries(d, 'ttl.test')).toBe(1);
    // Now the MX TTL (120 s) is the smaller one.
    at(41 + 119);
    await r.resolve('ttl.test');
    expect(mxQueries(d, 'ttl.test')).toBe(1);
    at(41 + 121);
    await r.resolve('ttl.test');
    expect(mxQueries(d, 'ttl.test')).toBe(2);
    await d.stop();
  });

  it('clamps TTLs to at least 5 s and at most 1 h', async () => {
    const d = await startDnsmasq(['--local=/test/', '--local-ttl=1', rr.mx('short.test', 'mx.short.test', 10), rr.host('mx.short.test', '127.0.5.1'), rr.host('long.test', '127.0.5.2', 86400)]);
    const r = new Router({ routes: [], servers: [d.server], timeoutMs: 500, tries: 1, now });
    at(0);
    await r.resolve('short.test');
    at(4.9);
    await r.resolve('short.test');
    expect(mxQueries(d, 'short.test')).toBe(1);
    at(5.1);
    await r.resolve('short.test');
    expect(mxQueries(d, 'short.test')).toBe(2);

    // implicit MX: the lifetime is bounded by the NODATA of the MX question too (no SOA from dnsmasq: 60 s),
    // so use a static route to a name with a one-day address TTL to see the 1 h ceiling.
    const s = new Router({ routes: [{ domain: '*', host: 'long.test', port: 25 }], servers: [d.server], timeoutMs: 500, tries: 1, now });
    const aQueries = (): number => d.queries().filter((q) => q === 'A long.test').length;
    at(0);
    await s.resolve('x.test');
    at(3599);
    await s.resolve('x.test');
    expect(aQueries()).toBe(1);
    at(3601);
    await s.resolve('x.test');
    expect(aQueries()).toBe(2);
    await d.stop();
  });

  it('caches a negative answer for the SOA minimum when there is one (authoritative dnsmasq), else 60 s', async () => {
    // In authoritative mode dnsmasq puts the zone's SOA in negative answers, its TTL and minimum from --auth-ttl.
    const auth = await startDnsmasq(['--auth-server=ns.auth.test,127.0.0.1', '--auth-zone=auth.test', '--auth-ttl=20', '--auth-soa=1,hostmaster.auth.test,1200,120,1209600', rr.host('ns.auth.test', '127.0.6.1')]);
    const r = new Router({ routes: [], servers: [auth.server], timeoutMs: 500, tries: 1, now });
    at(0);
    expect(await r.resolve('gone.auth.test')).toMatchObject({ kind: 'no-route', temporary: false });
    at(19);
    await r.resolve('gone.auth.test');
    expect(mxQueries(auth, 'gone.auth.test')).toBe(1);
    at(21);
    await r.resolve('gone.auth.test');
    expect(mxQueries(auth, 'gone.auth.test')).toBe(2);
    await auth.stop();

    const n = new Router({ routes: [], servers: [dns.server], timeoutMs: 500, tries: 1, now });
    const before = mxQueries(dns, 'gone.test');
    at(0);
    await n.resolve('gone.test');
    at(59);
    await n.resolve('gone.test');
    expect(mxQueries(dns, 'gone.test') - before).toBe(1);
    at(61);
    await n.resolve('gone.test');
    expect(mxQueries(dns, 'gone.test') - before).toBe(2);
  });

  it('caches a temporary failure for 30 s', async () => {
    const d = await startDnsmasq(['--local=/test/']); // REFUSED for anything outside .test
    const r = new Router({ routes: [], servers: [d.server], timeoutMs: 500, tries: 1, now });
    at(0);
    expect(await r.resolve('temp.example')).toMatchObject({ kind: 'no-route', temporary: true });
    at(29);
    await r.resolve('temp.example');
    expect(mxQueries(d, 'temp.example')).toBe(1);
    at(31);
    await r.resolve('temp.example');
    expect(mxQueries(d, 'temp.example')).toBe(2);
    await d.stop();
  });

  it('concurrent lookups of one domain share one query', async () => {
    const r = new Router({ routes: [], servers: [dns.server], timeoutMs: 500, tries: 1, now });
    const before = mxQueries(dns, 'two.test');
    const routes = await Promise.all(Array.from({ length: 10 }, () => r.resolve('two.test')));
    expect(new Set(routes).size).toBe(1);
    expect(mxQueries(dns, 'two.test') - before).toBe(1);
  });
});
