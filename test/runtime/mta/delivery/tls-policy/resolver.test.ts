import { join } from 'node:path';
import { parseConfig } from '../../../../../runtime/shared/config/load';
import { TlsPolicyResolver, type MxTls } from '../../../../../runtime/mta/delivery/tls-policy/resolver';
import type { TlsaLookup } from '../../../../../runtime/mta/delivery/tls-policy/tlsa-lookup';
import { deliveryConfigYaml } from '../../../../helpers/config';
import { rr, startDnsmasq, type Dnsmasq } from '../../../../helpers/dnsmasq';
import { HttpsPeer } from '../../../../helpers/https-peer';
import { createTestCa } from '../../../../helpers/test-ca';
import { tempDir } from '../../../../helpers/tmp';

// MTA-STS against a real HTTPS policy host on loopback (its certificate from a
// test CA the config trusts) and a private dnsmasq serving the _mta-sts TXT
// records; time through an injected clock, so max_age passes without sleeping.

const dir = tempDir();
const ca = createTestCa(dir);
const otherCa = createTestCa(dir, 'Untrusted CA');
const POLICY = '/.well-known/mta-sts.txt';
const DOMAINS = ['enforce.test', 'testing.test', 'none.test', 'redirect.test', 'badtype.test', 'refresh.test', 'gone.test', 'auto.test'];
const peer = new HttpsPeer(ca.issue(DOMAINS.map((d) => `mta-sts.${d}`)));
// Same port on another loopback address: certificate from a CA nobody trusts.
const untrusted = new HttpsPeer(otherCa.issue(['mta-sts.untrusted.test']));
let dns: Dnsmasq;
let clock = Date.parse('2026-12-05T10:00:00Z');

const policy = (mode: string, mx: string[], maxAge = 86400): string => `version: STSv1\nmode: ${mode}\n${mx.map((m) => `mx: ${m}`).join('\n')}\nmax_age: ${maxAge}\n`;

function records(ids: Record<string, string>): string[] {
  return [
    '--local=/test/',
    ...Object.entries(ids).map(([d, id]) => rr.txt(`_mta-sts.${d}`, `v=STSv1; id=${id}`)),
    ...[...DOMAINS, 'wrongname.test'].map((d) => rr.host(`mta-sts.${d}`, '127.0.0.1')),
    rr.host('mta-sts.untrusted.test', '127.0.0.2'),
  ];
}
const IDS = { 'enforce.test': '1', 'testing.test': '1', 'none.test': '1', 'redirect.test': '1', 'badtype.test': '1', 'refresh.test': '1', 'gone.test': '1', 'wrongname.test': '1', 'untrusted.test': '1', 'auto.test': '1' };

beforeAll(async () => {
  const port = await peer.listen('127.0.0.1');
  await untrusted.listen('127.0.0.2', port);
  peer.answers.set(`mta-sts.enforce.test${POLICY}`, { body: policy('enforce', ['mx1.enforce.test', '*.pool.enforce.test']) });
  peer.answers.set(`mta-sts.testing.test${POLICY}`, { body: policy('testing', ['mx1.testing.test']) });
  peer.answers.set(`mta-sts.none.test${POLICY}`, { body: 'version: STSv1\nmode: none\nmax_age: 86400\n' });
  peer.answers.set(`mta-sts.redirect.test${POLICY}`, { status: 301, headers: { location: `https://mta-sts.enforce.test:${port}${POLICY}` } });
  peer.answers.set(`mta-sts.badtype.test${POLICY}`, { contentType: 'text/html', body: policy('enforce', ['mx1.badtype.test']) });
  peer.answers.set(`mta-sts.refresh.test${POLICY}`, { body: policy('enforce', ['mx1.refresh.test'], 7200) });
  peer.answers.set(`mta-sts.gone.test${POLICY}`, { body: policy('enforce', ['mx1.gone.test'], 3600) });
  peer.answers.set(`mta-sts.auto.test${POLICY}`, { body: policy('enforce', ['mx1.auto.test']) });
  untrusted.answers.set(`mta-sts.untrusted.test${POLICY}`, { body: policy('enforce', ['mx1.untrusted.test']) });
  dns = await startDnsmasq(records(IDS));
});
afterAll(async () => {
  await peer.close();
  await untrusted.close();
});

const configWith = (extra = ''): ReturnType<typeof parseConfig> =>
  parseConfig(deliveryConfigYaml(`resolver: { servers: ["${dns.server}"] }\nmta_sts: { ca_file: "${ca.caFile}" }\n${extra}`));
function resolver(extra = '', tlsa?: TlsaLookup): TlsPolicyResolver {
  return new TlsPolicyResolver({ config: configWith(extra), now: () => clock, stsPort: peer.port, tlsa });
}
const mx = (...hosts: string[]): { host: string; port: number }[] => hosts.map((host) => ({ host, port: 25 }));
const fetches = (domain: string): number => peer.to(`mta-sts.${domain}`, POLICY).length;

test('enforce: an MX in the policy (exactly or by wildcard) must verify its name; one outside it is not used', async () => {
  const r = resolver();
  const [exact, wild, outside, deeper] = await r.forHosts('enforce.test', mx('mx1.enforce.test', 'a.pool.enforce.test', 'mx9.enforce.test', 'a.b.pool.enforce.test'), 'mx');
  expect(exact).toMatchObject({ use: true, requirement: { mode: 'verify', policy: 'mta-sts', names: ['mx1.enforce.test'] } });
  expect(exact.report).toMatchObject({ type: 'sts', domain: 'enforce.test', mxHost: ['mx1.enforce.test', '*.pool.enforce.test'] });
  expect(wild).toMatchObject({ use: true, requirement: { mode: 'verify', names: ['a.pool.enforce.test'] } });
  expect(outside).toMatchObject({ use: false, resultType: 'sts-policy-invalid', reason: expect.stringContaining('mx9.enforce.test is not in the MTA-STS policy') as string });
  expect(deeper).toMatchObject({ use: false, resultType: 'sts-policy-invalid' });
});

test('testing: every MX is used, checked as verify but never held back by it (testing); one outside the patterns carries the failure to log and report', async () => {
  const [inside, outside] = await resolver().forHosts('testing.test', mx('mx1.testing.test', 'mx2.testing.test'), 'mx');
  expect(inside).toEqual(expect.objectContaining({ use: true, requirement: { mode: 'verify', policy: 'mta-sts', names: ['mx1.testing.test'], testing: true } }));
  expect(inside).not.toHaveProperty('failure');
  expect(outside).toMatchObject({ use: true, requirement: { mode: 'verify', names: ['mx2.testing.test'], testing: true }, failure: { resultType: 'sts-policy-invalid' } });
});

test('mode none, and a domain without the TXT record, are delivered as may; no TXT means no HTTPS request', async () => {
  const r = resolver();
  expect((await r.forHosts('none.test', mx('mx.none.test'), 'mx'))[0]).toMatchObject({ use: true, requirement: { mode: 'may', policy: 'may' }, report: { type: 'sts' } });
  const before = peer.requests.length;
  expect((await r.forHosts('nopolicy.test', mx('mx.nopolicy.test'), 'mx'))[0]).toMatchObject({ use: true, requirement: { mode: 'may' }, report: { type: 'no-policy-found' } });
  expect(peer.requests.length).toBe(before);
});

test.each([
  ['a certificate not valid for the policy host', 'wrongname.test', 'sts-webpki-invalid'],
  ['a certificate from an untrusted CA', 'untrusted.test', 'sts-webpki-invalid'],
  ['a redirect (never followed)', 'redirect.test', 'sts-policy-fetch-error'],
  ['a policy not served as text/plain', 'badtype.test', 'sts-policy-invalid'],
])('%s: no policy is taken (may), and the failure is reported', async (_what, domain, resultType) => {
  const enforcedBefore = fetches('enforce.test');
  const [d] = await resolver().forHosts(domain, mx(`mx1.${domain}`), 'mx');
  expect(d).toMatchObject({ use: true, requirement: { mode: 'may', policy: 'may' }, report: { type: 'sts', domain }, failure: { resultType } });
  expect(fetches('enforce.test')).toBe(enforcedBefore); // the redirect's target was not asked
});

const txtQueries = (domain: string): number => dns.queries().filter((q) => q === `TXT _mta-sts.${domain}`).length;

test('a policy is cached, refreshed before expiry in the background, its id checked again, and refetched when the id changes', async () => {
  clock = Date.parse('2026-12-05T10:00:00Z');
  const r = resolver();
  const hosts = mx('mx1.refresh.test');
  await r.forHosts('refresh.test', hosts, 'mx');
  expect(fetches('refresh.test')).toBe(1);
  // Cached: more deliveries, no fetch, no DNS.
  const asked = txtQueries('refresh.test');
  for (let i = 0; i < 5; i++) await r.forHosts('refresh.test', hosts, 'mx');
  expect(fetches('refresh.test')).toBe(1);
  expect(txtQueries('refresh.test')).toBe(asked);

  // max_age 2 h: half-way it is due for refresh. The delivery that finds it due is answered from the cache, the fetch runs behind it.
  clock += 3_600_000;
  peer.answers.set(`mta-sts.refresh.test${POLICY}`, { body: policy('enforce', ['mx2.refresh.test'], 86400) });
  expect((await r.forHosts('refresh.test', hosts, 'mx'))[0]).toMatchObject({ use: true });
  await r.stsIdle();
  expect(fetches('refresh.test')).toBe(2);
  expect((await r.forHosts('refresh.test', hosts, 'mx'))[0]).toMatchObject({ use: false, resultType: 'sts-policy-invalid' });

  // An hour on (max_age now 1 day): the id is checked, unchanged, so nothing is fetched.
  clock += 3_600_001;
  await r.forHosts('refresh.test', hosts, 'mx');
  await r.stsIdle();
  expect(txtQueries('refresh.test')).toBe(asked + 2);
  expect(fetches('refresh.test')).toBe(2);

  // A new id in DNS: the next check fetches the policy again, long before it is due for refresh.
  peer.answers.set(`mta-sts.refresh.test${POLICY}`, { body: policy('enforce', ['mx1.refresh.test'], 86400) });
  await dns.restart(records({ ...IDS, 'refresh.test': '2' }));
  clock += 3_600_001;
  await r.forHosts('refresh.test', hosts, 'mx');
  await r.stsIdle();
  expect(fetches('refresh.test')).toBe(3);
  expect(r.cachedSts('refresh.test')).toMatchObject({ kind: 'policy', id: '2' });
  expect((await r.forHosts('refresh.test', hosts, 'mx'))[0]).toMatchObject({ use: true, requirement: { mode: 'verify' } });
});

test('a TXT record removed does not withdraw a cached policy before its max_age; past it the domain has none', async () => {
  await dns.restart(records(IDS));
  clock = Date.parse('2026-12-06T10:00:00Z');
  const r = resolver();
  const hosts = mx('mx9.gone.test');
  expect((await r.forHosts('gone.test', hosts, 'mx'))[0]).toMatchObject({ use: false });
  const { 'gone.test': _, ...rest } = IDS;
  await dns.restart(records(rest));
  clock += 1_900_000; // past the id check (max_age 1 h: every 30 min)
  await r.forHosts('gone.test', hosts, 'mx');
  await r.stsIdle();
  expect(txtQueries('gone.test')).toBe(1);
  expect((await r.forHosts('gone.test', hosts, 'mx'))[0]).toMatchObject({ use: false }); // still enforced
  clock += 3_600_000; // past max_age
  expect((await r.forHosts('gone.test', hosts, 'mx'))[0]).toMatchObject({ use: true, requirement: { mode: 'may' }, report: { type: 'no-policy-found' } });
  await dns.restart(records(IDS));
});

describe('the ladder', () => {
  const secure: TlsaLookup = {
    lookup: (host) => {
      if (host === 'dane.auto.test') return Promise.resolve({ secure: true, records: [{ usage: 3, selector: 1, matchingType: 1, data: 'ab'.repeat(32) }, { usage: 1, selector: 0, matchingType: 1, data: 'cd'.repeat(32) }] });
      if (host === 'pkix.auto.test') return Promise.resolve({ secure: true, records: [{ usage: 1, selector: 0, matchingType: 1, data: 'cd'.repeat(32) }] });
      if (host === 'bogus.auto.test') return Promise.reject(new Error('SERVFAIL (bogus signature)'));
      return Promise.resolve({ secure: false, records: [] });
    },
  };

  test('auto: dane where secure TLSA exists (usable records only), else the MTA-STS policy; a failed TLSA lookup refuses the MX', async () => {
    const [dane, pkix, bogus, sts] = await resolver('', secure).forHosts('auto.test', mx('dane.auto.test', 'pkix.auto.test', 'bogus.auto.test', 'mx1.auto.test'), 'mx');
    expect(dane).toMatchObject({ use: true, requirement: { mode: 'dane', policy: 'dane', names: ['dane.auto.test'], tlsa: [{ usage: 3 }] }, report: { type: 'tlsa', mxHost: ['dane.auto.test'] } });
    expect((dane as Extract<MxTls, { use: true }>).requirement.tlsa).toHaveLength(1);
    expect(pkix).toMatchObject({ use: true, requirement: { mode: 'encrypt', policy: 'dane' } });
    expect(bogus).toMatchObject({ use: false, resultType: 'dnssec-invalid' });
    expect(sts).toMatchObject({ use: true, requirement: { mode: 'verify', policy: 'mta-sts' } });
  });

  test('without a DNSSEC resolver (the default lookup) auto never picks dane', async () => {
    const [d] = await resolver().forHosts('auto.test', mx('dane.auto.test'), 'mx');
    expect(d).toMatchObject({ use: false, resultType: 'sts-policy-invalid' }); // MTA-STS decided: dane.auto.test is not in its policy
  });

  test('per-domain and default policies, the old names as aliases; static routes get may for the DNS-based ones', async () => {
    const r = resolver(`delivery: { tls_policy: opportunistic }\ntls_policies:\n  - { domain: Enc.test, policy: required }\n  - { domain: off.test, policy: never }\n  - { domain: v.test, policy: verify }\n  - { domain: auto.test, policy: auto }\n`);
    expect(r.policyOf('enc.test')).toBe('encrypt');
    expect(r.policyOf('other.test')).toBe('may');
    expect((await r.forHosts('enc.test', mx('a'), 'static'))[0]).toMatchObject({ requirement: { mode: 'encrypt', policy: 'encrypt' } });
    expect((await r.forHosts('off.test', mx('a'), 'mx'))[0]).toMatchObject({ requirement: { mode: 'none', policy: 'none' } });
    expect((await r.forHosts('v.test', mx('mx.v.test'), 'mx'))[0]).toMatchObject({ requirement: { mode: 'verify', policy: 'verify', names: ['mx.v.test'] } });
    expect((await r.forHosts('auto.test', mx('smarthost.example'), 'static'))[0]).toMatchObject({ use: true, requirement: { mode: 'may' } });
    // A config refresh changes them.
    r.apply(configWith('tls_policies:\n  - { domain: enc.test, policy: none }\n'));
    expect(r.policyOf('enc.test')).toBe('none');
    expect(r.policyOf('other.test')).toBe('auto');
  });

  test('TLSA found at the CNAME-expanded name: DANE-TA checks the certificate against that base domain and the MX host (RFC 7672 3.2.2)', async () => {
    const viaCname: TlsaLookup = { lookup: () => Promise.resolve({ secure: true, records: [{ usage: 2, selector: 1, matchingType: 1, data: 'ab'.repeat(32) }], baseDomain: 'mx.hosting.example' }) };
    const [d] = await resolver('', viaCname).forHosts('auto.test', mx('mx1.auto.test'), 'mx');
    expect(d).toMatchObject({ use: true, requirement: { mode: 'dane', names: ['mx.hosting.example', 'mx1.auto.test'] } });
  });

  test('mta-sts alone does not look up TLSA; dane alone does not fetch MTA-STS', async () => {
    const asked: string[] = [];
    const tlsa: TlsaLookup = { lookup: (host) => (asked.push(host), secure.lookup(host, 25)) };
    const before = fetches('auto.test');
    const r = resolver('tls_policies:\n  - { domain: auto.test, policy: dane }\n  - { domain: enforce.test, policy: mta-sts }\n', tlsa);
    expect((await r.forHosts('auto.test', mx('mx1.auto.test'), 'mx'))[0]).toMatchObject({ use: true, requirement: { mode: 'may', policy: 'may' } });
    expect(fetches('auto.test')).toBe(before);
    expect((await r.forHosts('enforce.test', mx('mx1.enforce.test'), 'mx'))[0]).toMatchObject({ requirement: { mode: 'verify' } });
    expect(asked).toEqual(['mx1.auto.test']);
  });
});

test('with a file, policies survive a restart: the new resolver enforces before it can fetch anything; expired ones are not kept', async () => {
  clock = Date.parse('2026-12-07T10:00:00Z');
  const file = join(dir, 'sts-cache.json');
  const first = new TlsPolicyResolver({ config: configWith(), now: () => clock, stsPort: peer.port, stsFile: file });
  expect((await first.forHosts('enforce.test', mx('mx9.enforce.test'), 'mx'))[0]).toMatchObject({ use: false });
  expect((await first.forHosts('gone.test', mx('mx9.gone.test'), 'mx'))[0]).toMatchObject({ use: false }); // max_age 1 h

  // After the restart the policy host is unreachable (an attacker blocks it) and an hour and a half has passed.
  const saved = peer.answers.get(`mta-sts.enforce.test${POLICY}`)!;
  peer.answers.set(`mta-sts.enforce.test${POLICY}`, { status: 503 });
  clock += 5_400_000;
  const fetched = fetches('enforce.test');
  const second = new TlsPolicyResolver({ config: configWith(), now: () => clock, stsPort: peer.port, stsFile: file });
  expect(second.cachedSts('enforce.test')).toMatchObject({ kind: 'policy', policy: { mode: 'enforce' } });
  expect((await second.forHosts('enforce.test', mx('mx9.enforce.test', 'mx1.enforce.test'), 'mx')).map((d) => d.use)).toEqual([false, true]);
  await second.stsIdle(); // its background check ran into the blocked host, and the saved policy stands
  expect(fetches('enforce.test')).toBeGreaterThanOrEqual(fetched);
  expect((await second.forHosts('enforce.test', mx('mx9.enforce.test'), 'mx'))[0]).toMatchObject({ use: false });
  expect(second.cachedSts('gone.test')).toBeUndefined(); // its max_age ran out while we were down
  peer.answers.set(`mta-sts.enforce.test${POLICY}`, saved);
});
