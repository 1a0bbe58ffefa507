import { DnsTxt } from '../../../../../runtime/mta/delivery/tls-policy/dns-txt';
import { ReportInterest } from '../../../../../runtime/mta/delivery/tls-policy/tls-rpt-interest';
import { readDay, TlsRptStore } from '../../../../../runtime/mta/delivery/tls-policy/tls-rpt-store';
import { rr, startDnsmasq, type Dnsmasq } from '../../../../helpers/dnsmasq';
import { tempDir } from '../../../../helpers/tmp';

// Only domains that publish _smtp._tls are counted (dnsmasq on loopback says who does).

const dir = tempDir();
let dns: Dnsmasq;
beforeAll(async () => {
  dns = await startDnsmasq(['--local=/test/', rr.txt('_smtp._tls.asks.test', 'v=TLSRPTv1; rua=mailto:tlsrpt@asks.test'), rr.txt('_smtp._tls.bad.test', 'v=TLSRPTv1; rua=ftp://x')]);
});

test('sessions to a domain that publishes _smtp._tls are counted; others are not; one DNS question per domain', async () => {
  let clock = Date.parse('2026-12-05T12:00:00Z');
  const interest = new ReportInterest(new DnsTxt([dns.server]), () => clock);
  const store = new TlsRptStore({ dir, worker: 'w0', now: () => clock, flushMs: 0, interest });
  const policy = (domain: string) => ({ type: 'no-policy-found' as const, domain, strings: [] });
  for (let i = 0; i < 3; i++) for (const d of ['asks.test', 'silent.test', 'bad.test']) store.add({ policy: policy(d), ok: true });
  await interest.idle();
  store.add({ policy: policy('asks.test'), ok: false, failure: { resultType: 'starttls-not-supported' } }); // known now: counted at once
  store.add({ policy: policy('silent.test'), ok: true });
  await store.close();
  const day = readDay(dir, '2026-12-05');
  expect([...day.keys()]).toEqual(['asks.test']);
  expect(day.get('asks.test')![0]).toMatchObject({ ok: 3, failed: 1 });
  expect(dns.queries().filter((q) => q.startsWith('TXT _smtp._tls.')).sort()).toEqual(['TXT _smtp._tls.asks.test', 'TXT _smtp._tls.bad.test', 'TXT _smtp._tls.silent.test']);

  // Six hours on, the domain is asked again.
  clock += 6 * 3_600_000;
  store.add({ policy: policy('silent.test'), ok: true });
  await interest.idle();
  expect(dns.queries().filter((q) => q === 'TXT _smtp._tls.silent.test')).toHaveLength(2);
});
