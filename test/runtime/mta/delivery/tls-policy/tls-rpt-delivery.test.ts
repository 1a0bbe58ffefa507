import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { simpleParser } from 'mailparser';
import { deliveryConfigYaml } from '../../../../helpers/config';
import { rr, startDnsmasq, txtConf } from '../../../../helpers/dnsmasq';
import { HttpsPeer } from '../../../../helpers/https-peer';
import { startMta, type MtaProcess } from '../../../../helpers/mta-process';
import { waitUntil } from '../../../../helpers/proxy-fixtures';
import { ScriptedMx } from '../../../../helpers/scripted-mx';
import { createTestCa } from '../../../../helpers/test-ca';
import { tlsRptErrors } from '../../../../helpers/tlsrpt-schema';
import { tempDir } from '../../../../helpers/tmp';

// TLS-RPT end to end: a running MTA finds a finished day's counts under its
// persistent path (as its workers wrote them), reads the policy domain's
// _smtp._tls record from dnsmasq, POSTs the report to an https: endpoint on
// loopback and queues the mailto: copy in its own spool, from where it is
// delivered to an MX like any other mail.

const dir = tempDir();
const ca = createTestCa(dir);
const endpoint = new HttpsPeer(ca.issue(['rpt.reports.test']));
const mx = new ScriptedMx();
let mta: MtaProcess;
const day = new Date(Date.now() - 2 * 86_400_000).toISOString().slice(0, 10); // finished, whatever the time of day

beforeAll(async () => {
  const port = await endpoint.listen('127.0.0.1');
  endpoint.answers.set('rpt.reports.test/tlsrpt', { status: 200 });
  const mxPort = await mx.listen();
  const dns = await startDnsmasq([
    '--local=/test/',
    rr.host('rpt.reports.test', '127.0.0.1'),
    txtConf(dir, { '_smtp._tls.policy.test': `v=TLSRPTv1; rua=mailto:tlsrpt@reports.test,https://rpt.reports.test:${port}/tlsrpt` }),
  ]);
  const pp = join(dir, 'pp');
  mkdirSync(join(pp, 'tls-rpt'), { recursive: true });
  const policy = { type: 'sts', domain: 'policy.test', strings: ['version: STSv1', 'mode: enforce', 'mx: mx.policy.test', 'max_age: 86400'], mxHost: ['mx.policy.test'] };
  writeFileSync(
    join(pp, 'tls-rpt', `w0-${day}.jsonl`),
    `${JSON.stringify({ day, policy, ok: 41, failed: 1, failures: [{ resultType: 'sts-policy-invalid', mxHost: 'mx9.policy.test', sendingIp: '127.0.0.1', count: 1 }] })}\n`,
  );
  const config = join(dir, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`resolver: { servers: ["${dns.server}"] }
routes: [{ domain: reports.test, host: 127.0.0.1, port: ${mxPort} }]
delivery: { retry: [1h] }
tls_rpt: { enabled: true, organization_name: Volley Test, contact_info: ops@mta.test.example, ca_file: "${ca.caFile}" }
`),
  );
  mta = await startMta({ configPath: config, persistentPath: pp, workers: 2 });
});
afterAll(async () => {
  await mta?.stop();
  await mx.close();
  await endpoint.close();
});

test('the https: endpoint gets the gzipped report, and it validates against RFC 8460', async () => {
  await waitUntil(() => endpoint.to('rpt.reports.test', '/tlsrpt').length > 0, 15_000);
  const [post] = endpoint.to('rpt.reports.test', '/tlsrpt');
  expect(post.headers['content-type']).toBe('application/tlsrpt+gzip');
  const report = JSON.parse(gunzipSync(post.body).toString('utf8')) as unknown;
  expect(tlsRptErrors(report)).toEqual([]);
  expect(report).toMatchObject({
    'date-range': { 'start-datetime': `${day}T00:00:00Z` },
    policies: [{ policy: { 'policy-type': 'sts', 'policy-domain': 'policy.test' }, summary: { 'total-successful-session-count': 41, 'total-failure-session-count': 1 } }],
  });
});

test('the mailto: copy is delivered through our own queue, as RFC 8460 5.3 mail with the report attached', async () => {
  await mx.waitFor(1);
  const [received] = mx.messages;
  expect(received.from).toBe('noreply-smtp-tls-reporting@mta.test.example');
  expect(received.to).toEqual(['tlsrpt@reports.test']);
  const mail = await simpleParser(received.raw);
  expect(mail.headers.get('tls-report-domain')).toBe('policy.test');
  expect(mail.subject).toMatch(/^Report Domain: policy\.test Submitter: mta\.test\.example Report-ID: </);
  const att = mail.attachments.find((a) => a.contentType === 'application/tlsrpt+gzip');
  const report = JSON.parse(gunzipSync(att!.content).toString('utf8')) as unknown;
  expect(tlsRptErrors(report)).toEqual([]);
  expect(report).toMatchObject({ policies: [{ 'failure-details': [{ 'result-type': 'sts-policy-invalid', 'receiving-mx-hostname': 'mx9.policy.test', 'failed-session-count': 1 }] }] });
});
