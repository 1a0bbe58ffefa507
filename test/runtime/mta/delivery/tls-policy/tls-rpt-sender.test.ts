import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseConfig } from '../../../../../runtime/shared/config/load';
import { DnsTxt } from '../../../../../runtime/mta/delivery/tls-policy/dns-txt';
import { TlsRptSender } from '../../../../../runtime/mta/delivery/tls-policy/tls-rpt-sender';
import { TlsRptStore } from '../../../../../runtime/mta/delivery/tls-policy/tls-rpt-store';
import { deliveryConfigYaml } from '../../../../helpers/config';
import { rr, startDnsmasq, txtConf, type Dnsmasq } from '../../../../helpers/dnsmasq';
import { HttpsPeer } from '../../../../helpers/https-peer';
import { createTestCa } from '../../../../helpers/test-ca';
import { tlsRptErrors } from '../../../../helpers/tlsrpt-schema';
import { tempDir } from '../../../../helpers/tmp';

// The sender on its own, with an injected clock: a real https: endpoint on
// loopback (test CA) and dnsmasq serving the _smtp._tls records; mailto:
// reports are handed to `submit` (the MTA's own intake; see
// tls-rpt-delivery.test.ts for them reaching an MX).

const dir = tempDir();
const ca = createTestCa(dir);
const endpoint = new HttpsPeer(ca.issue(['rpt.reports.test']));
let dns: Dnsmasq;

beforeAll(async () => {
  const port = await endpoint.listen('127.0.0.1');
  endpoint.answers.set('rpt.reports.test/v1/tlsrpt', { status: 201 });
  dns = await startDnsmasq([
    '--local=/test/',
    rr.host('rpt.reports.test', '127.0.0.1'),
    txtConf(dir, {
      '_smtp._tls.a.test': `v=TLSRPTv1; rua=mailto:tlsrpt@reports.test,https://rpt.reports.test:${port}/v1/tlsrpt`,
      '_smtp._tls.flaky.test': `v=TLSRPTv1; rua=mailto:tlsrpt@reports.test,https://rpt.reports.test:${port}/flaky`,
    }),
    // quiet.test publishes no _smtp._tls: its counts are dropped unsent.
  ]);
});
afterAll(() => endpoint.close());

test('finished days only; https: POSTs gzip JSON that validates, mailto: is queued; what went out is never sent again', async () => {
  let clock = Date.parse('2026-12-04T12:00:00Z');
  const rptDir = join(dir, 'rpt');
  const config = parseConfig(deliveryConfigYaml(`resolver: { servers: ["${dns.server}"] }\ntls_rpt: { enabled: true, organization_name: Volley Test, contact_info: ops@mta.test.example, ca_file: "${ca.caFile}" }\n`));
  const store = new TlsRptStore({ dir: rptDir, worker: 'w0', now: () => clock, flushMs: 0 });
  const sts = { type: 'sts' as const, domain: 'a.test', strings: ['version: STSv1', 'mode: enforce', 'mx: mx.a.test', 'max_age: 86400'], mxHost: ['mx.a.test'] };
  store.add({ policy: sts, ok: true });
  store.add({ policy: sts, ok: false, failure: { resultType: 'sts-policy-invalid', mxHost: 'mx9.a.test' } });
  store.add({ policy: { type: 'no-policy-found', domain: 'flaky.test', strings: [] }, ok: true });
  store.add({ policy: { type: 'no-policy-found', domain: 'quiet.test', strings: [] }, ok: true });
  await store.close();

  const submitted: { from: string; to: string[]; message: Buffer }[] = [];
  const sender = new TlsRptSender({ dir: rptDir, config, nodeId: 'node-1', dns: new DnsTxt([dns.server]), submit: async (m) => void submitted.push(m), now: () => clock });

  // The day is not over (nor, at 00:05 next day, past the margin that lets every worker write its last counts).
  expect(await sender.sendDue()).toEqual([]);
  clock = Date.parse('2026-12-05T00:05:00Z');
  expect(await sender.sendDue()).toEqual([]);

  clock = Date.parse('2026-12-05T00:20:00Z');
  const sent = await sender.sendDue();
  expect(sent).toEqual(
    expect.arrayContaining([
      { day: '2026-12-04', domain: 'a.test', uri: 'mailto:tlsrpt@reports.test', ok: true },
      { day: '2026-12-04', domain: 'a.test', uri: expect.stringMatching(/^https:\/\/rpt\.reports\.test:\d+\/v1\/tlsrpt$/) as string, ok: true },
      { day: '2026-12-04', domain: 'flaky.test', uri: 'mailto:tlsrpt@reports.test', ok: true },
      { day: '2026-12-04', domain: 'flaky.test', uri: expect.stringMatching(/\/flaky$/) as string, ok: false, error: 'HTTP 404' },
    ]),
  );
  expect(sent).toHaveLength(4);
  const [post] = endpoint.to('rpt.reports.test', '/v1/tlsrpt');
  expect(post).toMatchObject({ method: 'POST', headers: { 'content-type': 'application/tlsrpt+gzip' } });
  const report = JSON.parse(gunzipSync(post.body).toString('utf8')) as { policies: unknown[] };
  expect(tlsRptErrors(report)).toEqual([]);
  expect(report).toMatchObject({ 'organization-name': 'Volley Test', 'contact-info': 'ops@mta.test.example', policies: [{ summary: { 'total-successful-session-count': 1, 'total-failure-session-count': 1 } }] });
  expect(submitted.map((m) => [m.from, m.to])).toEqual([
    ['noreply-smtp-tls-reporting@mta.test.example', ['tlsrpt@reports.test']],
    ['noreply-smtp-tls-reporting@mta.test.example', ['tlsrpt@reports.test']],
  ]);

  // The next run (a restart reads the same files) sends only what failed: flaky's https:, now answering.
  endpoint.answers.set('rpt.reports.test/flaky', { status: 200 });
  clock += 5 * 60_000;
  const again = await sender.sendDue();
  expect(again).toEqual([{ day: '2026-12-04', domain: 'flaky.test', uri: expect.stringMatching(/\/flaky$/) as string, ok: true }]);
  expect(submitted).toHaveLength(2);
  expect(endpoint.to('rpt.reports.test', '/v1/tlsrpt')).toHaveLength(1);
  // Everything of the day went out: its files are gone.
  expect(readdirSync(rptDir)).toEqual([]);
  expect(existsSync(join(rptDir, 'sent-2026-12-04.json'))).toBe(false);
  expect(await sender.sendDue()).toEqual([]);
});
