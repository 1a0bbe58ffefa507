import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deliveryConfigYaml } from '../../../../helpers/config';
import { attemptsFor } from '../../../../helpers/attempt-log';
import { rr, startDnsmasq } from '../../../../helpers/dnsmasq';
import { HttpsPeer } from '../../../../helpers/https-peer';
import { startMta, type MtaProcess } from '../../../../helpers/mta-process';
import { waitUntil } from '../../../../helpers/proxy-fixtures';
import { ScriptedMx } from '../../../../helpers/scripted-mx';
import { inject, message } from '../../../../helpers/smtp-dialog';
import { createTestCa } from '../../../../helpers/test-ca';
import { tempDir } from '../../../../helpers/tmp';
import type { DeliveryEvent } from '../../../../../runtime/mta/events/types';

// The engine under MTA-STS, end to end: a real MTA process resolves MX records
// and _mta-sts TXT records through a private dnsmasq, fetches the policies
// from an HTTPS host on 127.0.19.1:443 (certificate from a test CA the config
// trusts) and delivers to MXes on port 25 of their own loopback addresses.
// An MX outside an enforced policy is never connected to; in testing it is
// used, and the failure logged. The same for an MX inside the policy whose
// certificate (from the trusted CA, delivery.tls_ca_file) is issued for another
// name. Every session to a domain that publishes _smtp._tls is counted for TLS-RPT.

const dir = tempDir();
const ca = createTestCa(dir);
const POLICY = '/.well-known/mta-sts.txt';
const policyHost = new HttpsPeer(ca.issue(['mta-sts.enf.test', 'mta-sts.onlybad.test', 'mta-sts.tst.test', 'mta-sts.mism.test', 'mta-sts.mismt.test']));
const outside = new ScriptedMx({ address: '127.0.19.2' }); // never in any policy
const inside = new ScriptedMx({ address: '127.0.19.3', tls: ca.issue(['mx2.enf.test']) });
const misnamed = new ScriptedMx({ address: '127.0.19.4', tls: ca.issue(['someone-else.test']) }); // in its policies, but its certificate is not for its name
let mta: MtaProcess;

beforeAll(async () => {
  await policyHost.listen('127.0.19.1', 443);
  await outside.listen(25);
  await inside.listen(25);
  await misnamed.listen(25);
  policyHost.answers.set(`mta-sts.enf.test${POLICY}`, { body: 'version: STSv1\nmode: enforce\nmx: mx2.enf.test\nmax_age: 86400\n' });
  policyHost.answers.set(`mta-sts.onlybad.test${POLICY}`, { body: 'version: STSv1\nmode: enforce\nmx: *.elsewhere.test\nmax_age: 86400\n' });
  policyHost.answers.set(`mta-sts.tst.test${POLICY}`, { body: 'version: STSv1\nmode: testing\nmx: *.elsewhere.test\nmax_age: 86400\n' });
  policyHost.answers.set(`mta-sts.mism.test${POLICY}`, { body: 'version: STSv1\nmode: enforce\nmx: mx.mism.test\nmax_age: 86400\n' });
  policyHost.answers.set(`mta-sts.mismt.test${POLICY}`, { body: 'version: STSv1\nmode: testing\nmx: mx.mismt.test\nmax_age: 86400\n' });
  const dns = await startDnsmasq([
    '--local=/test/',
    ...['enf.test', 'onlybad.test', 'tst.test'].flatMap((d) => [
      rr.txt(`_mta-sts.${d}`, 'v=STSv1; id=1'),
      rr.host(`mta-sts.${d}`, '127.0.19.1'),
      rr.txt(`_smtp._tls.${d}`, 'v=TLSRPTv1; rua=mailto:tlsrpt@reports.test'),
    ]),
    rr.mx('quiet.test', 'mx2.enf.test', 10), // no MTA-STS, no _smtp._tls: delivered, not counted
    rr.mx('enf.test', 'mx1.enf.test', 10), // preferred, but outside the policy
    rr.mx('enf.test', 'mx2.enf.test', 20),
    rr.host('mx1.enf.test', '127.0.19.2'),
    rr.host('mx2.enf.test', '127.0.19.3'),
    rr.mx('onlybad.test', 'mx.onlybad.test', 10),
    rr.host('mx.onlybad.test', '127.0.19.2'),
    rr.mx('tst.test', 'mx.tst.test', 10),
    rr.host('mx.tst.test', '127.0.19.2'),
    ...['mism.test', 'mismt.test'].flatMap((d) => [rr.txt(`_mta-sts.${d}`, 'v=STSv1; id=1'), rr.host(`mta-sts.${d}`, '127.0.19.1'), rr.mx(d, `mx.${d}`, 10), rr.host(`mx.${d}`, '127.0.19.4')]),
  ]);
  const config = join(dir, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`resolver: { servers: ["${dns.server}"] }
delivery: { retry: [1h], tls_ca_file: "${ca.caFile}" }
mta_sts: { ca_file: "${ca.caFile}" }
tls_rpt: { enabled: true, organization_name: Volley Test, contact_info: tls-reports@mta.test.example }
`),
  );
  mta = await startMta({ configPath: config, persistentPath: join(dir, 'pp'), workers: 1 });
});
afterAll(async () => {
  await mta?.stop();
  await outside.close();
  await inside.close();
  await misnamed.close();
  await policyHost.close();
});

/** The attempts these tests read back: the event log's delivery events. */
type Attempt = DeliveryEvent;
async function finalEvent(id: string): Promise<Attempt> {
  const events = await attemptsFor<Attempt>(join(dir, 'pp', 'log', 'events'), id);
  return events[events.length - 1];
}
const logLines = (): { msg?: string; mx_host?: string; tls_failure?: string; tls_policy?: string; testing?: boolean }[] =>
  mta.log().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg?: string });

/**
 * A worker's log line with these fields: it reaches the MTA's log through the
 * primary's pipe, after the attempt's event, so it is waited for, not read at once.
 */
async function loggedLine(fields: Record<string, unknown>): Promise<void> {
  const has = (): boolean => logLines().some((l) => Object.entries(fields).every(([k, v]) => (l as Record<string, unknown>)[k] === v));
  await waitUntil(has, 10_000, () => `no log line with ${JSON.stringify(fields)}`);
  expect(logLines()).toContainEqual(expect.objectContaining(fields));
}

test('a domain without a policy is delivered as may', async () => {
  const id = await inject(mta.smtpPort, 'a@shop.example', ['user@quiet.test'], message('plain'));
  expect(await finalEvent(id)).toMatchObject({ status: 'delivered', mx_host: 'mx2.enf.test' });
});

test('enforce: the preferred MX outside the policy is skipped without a connection; the one inside gets the mail over TLS', async () => {
  const id = await inject(mta.smtpPort, 'a@shop.example', ['user@enf.test'], message('sts'));
  expect(await finalEvent(id)).toMatchObject({ status: 'delivered', mx_host: 'mx2.enf.test' });
  expect(outside.connections).toBe(0);
  expect(inside.secured).toBeGreaterThanOrEqual(1);
  await loggedLine({ mx_host: 'mx1.enf.test', tls_policy: 'mta-sts', tls_failure: 'sts-policy-invalid' });
});

test('enforce with no MX in the policy: deferred (451 4.7.5, tls-required), no connection made', async () => {
  const before = outside.connections;
  const id = await inject(mta.smtpPort, 'a@shop.example', ['user@onlybad.test'], message('sts'));
  expect(await finalEvent(id)).toMatchObject({ status: 'deferred', smtp_code: 451, enhanced_code: '4.7.5', error_kind: 'tls-required', smtp_text: expect.stringContaining('mx.onlybad.test is not in the MTA-STS policy of onlybad.test') as string });
  expect(outside.connections).toBe(before);
});

test('testing with the MX outside the policy: delivered, and the failure logged', async () => {
  const id = await inject(mta.smtpPort, 'a@shop.example', ['user@tst.test'], message('sts'));
  expect(await finalEvent(id)).toMatchObject({ status: 'delivered', mx_host: 'mx.tst.test' });
  await loggedLine({ mx_host: 'mx.tst.test', tls_policy: 'mta-sts', tls_failure: 'sts-policy-invalid', testing: true });
});

test('enforce with a certificate not valid for the MX name: deferred (tls-required, certificate-host-mismatch) after the handshake, nothing sent', async () => {
  const id = await inject(mta.smtpPort, 'a@shop.example', ['user@mism.test'], message('sts'));
  expect(await finalEvent(id)).toMatchObject({ status: 'deferred', error_kind: 'tls-required', tls_policy: 'mta-sts', tls_verified: false, tls_failure: 'certificate-host-mismatch' });
  expect(misnamed.secured).toBeGreaterThanOrEqual(1); // refused for its certificate, not for want of a session
  expect(misnamed.messages.filter((m) => m.to.includes('user@mism.test'))).toEqual([]);
});

test('testing with a certificate not valid for the MX name: delivered over TLS, the failure in the attempt log', async () => {
  const id = await inject(mta.smtpPort, 'a@shop.example', ['user@mismt.test'], message('sts'));
  expect(await finalEvent(id)).toMatchObject({ status: 'delivered', mx_host: 'mx.mismt.test', tls_policy: 'mta-sts', tls_verified: false, tls_failure: 'certificate-host-mismatch' });
  expect(misnamed.messages.filter((m) => m.to.includes('user@mismt.test'))).toHaveLength(1);
});

test("each session's result is counted per policy domain for TLS-RPT, on disk, for the domains that ask for reports", async () => {
  const rptDir = join(dir, 'pp', 'tls-rpt');
  const lines = (): { policy: { domain: string; type: string }; ok: number; failed: number; failures: { resultType: string; mxHost?: string }[] }[] =>
    readdirSync(rptDir)
      .filter((f) => f.endsWith('.jsonl'))
      .flatMap((f) => readFileSync(join(rptDir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as ReturnType<typeof lines>[number]));
  await waitUntil(() => ['enf.test', 'onlybad.test', 'tst.test'].every((d) => lines().some((l) => l.policy.domain === d)), 15_000);
  const sum = (d: string, k: 'ok' | 'failed'): number => lines().filter((l) => l.policy.domain === d).reduce((n, l) => n + l[k], 0);
  expect(sum('enf.test', 'ok')).toBeGreaterThanOrEqual(1); // mx2, over TLS
  expect(sum('enf.test', 'failed')).toBeGreaterThanOrEqual(1); // mx1, refused
  expect(sum('onlybad.test', 'ok')).toBe(0);
  expect(lines().find((l) => l.policy.domain === 'tst.test')).toMatchObject({ policy: { type: 'sts' }, failures: [{ resultType: 'sts-policy-invalid', mxHost: 'mx.tst.test' }] });
  expect(lines().filter((l) => l.policy.domain === 'quiet.test')).toEqual([]); // its session came first: it would be on disk by now
});
