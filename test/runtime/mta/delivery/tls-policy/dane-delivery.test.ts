import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { attemptsFor } from '../../../../helpers/attempt-log';
import { deliveryConfigYaml } from '../../../../helpers/config';
import { startDnssec, tlsaFor } from '../../../../helpers/dnssec';
import { HttpsPeer } from '../../../../helpers/https-peer';
import { startMta, type MtaProcess } from '../../../../helpers/mta-process';
import { waitUntil } from '../../../../helpers/proxy-fixtures';
import { ScriptedMx } from '../../../../helpers/scripted-mx';
import { inject, message } from '../../../../helpers/smtp-dialog';
import { createTestCa } from '../../../../helpers/test-ca';
import { tempDir } from '../../../../helpers/tmp';
import type { DeliveryEvent } from '../../../../../runtime/mta/events/types';

// DANE (RFC 7672) end to end: a real MTA process with the default policy
// (auto) and resolver.dnssec on, whose only resolver is unbound validating a
// zone bind9 serves signed with dnssec-signzone (test/helpers/dnssec.ts). MX
// records, addresses, TLSA records and the MTA-STS TXT record all come from
// that zone; the MXes listen on port 25 of their own loopback addresses.
//   match     TLSA (DANE-EE) of the MX's own key: delivered, dane, verified
//   mismatch  TLSA of another key: deferred after the handshake, nothing sent
//   bogus     TLSA whose signature fails: deferred, the MX never connected to
//   sts       no TLSA (securely denied), an MTA-STS policy: delivered as mta-sts
//   plain     no TLSA, no policy: delivered as may
// Each is read from the attempt log and from what the receiving MX saw.

const dir = tempDir();
const ca = createTestCa(dir);
const mxCert = (name: string): { key: string; cert: string } => ca.issue([name]);
const matchTls = mxCert('mx.match.dane.test');
const mismatchTls = mxCert('mx.mismatch.dane.test');
const bogusTls = mxCert('mx.bogus.dane.test');
const stranger = mxCert('stranger.dane.test'); // its key is what the mismatching TLSA names
const matching = new ScriptedMx({ address: '127.0.20.1', tls: matchTls });
const mismatching = new ScriptedMx({ address: '127.0.20.2', tls: mismatchTls });
const bogus = new ScriptedMx({ address: '127.0.20.3', tls: bogusTls });
const stsMx = new ScriptedMx({ address: '127.0.20.4', tls: mxCert('mx.sts.dane.test') });
const plainMx = new ScriptedMx({ address: '127.0.20.5', tls: mxCert('mx.plain.dane.test') });
const policyHost = new HttpsPeer(ca.issue(['mta-sts.sts.dane.test']));
let mta: MtaProcess;

beforeAll(async () => {
  for (const mx of [matching, mismatching, bogus, stsMx, plainMx]) await mx.listen(25);
  await policyHost.listen('127.0.20.10', 443);
  policyHost.answers.set('mta-sts.sts.dane.test/.well-known/mta-sts.txt', { body: 'version: STSv1\nmode: enforce\nmx: mx.sts.dane.test\nmax_age: 86400\n' });
  const mx = (domain: string, ip: string): string[] => [`${domain} MX 10 mx.${domain}.dane.test.`, `mx.${domain} A ${ip}`];
  const world = await startDnssec({
    signed: [
      ...mx('match', '127.0.20.1'),
      `_25._tcp.mx.match TLSA ${tlsaFor(matchTls.cert)}`,
      ...mx('mismatch', '127.0.20.2'),
      `_25._tcp.mx.mismatch TLSA ${tlsaFor(stranger.cert)}`,
      ...mx('bogus', '127.0.20.3'),
      ...mx('sts', '127.0.20.4'),
      '_mta-sts.sts TXT "v=STSv1; id=1"',
      'mta-sts.sts A 127.0.20.10',
      ...mx('plain', '127.0.20.5'),
    ],
    // Signed as the MX's own key, served as another's: only validation tells.
    bogus: [{ signed: `_25._tcp.mx.bogus TLSA ${tlsaFor(bogusTls.cert)}`, served: `_25._tcp.mx.bogus TLSA ${tlsaFor(stranger.cert)}` }],
  });
  const config = join(dir, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`resolver: { servers: ["${world.resolver}"], dnssec: true }
delivery: { retry: [1h], tls_ca_file: "${ca.caFile}" }
mta_sts: { ca_file: "${ca.caFile}" }
`),
  );
  mta = await startMta({ configPath: config, persistentPath: join(dir, 'pp'), workers: 1 });
});
afterAll(async () => {
  await mta?.stop();
  for (const mx of [matching, mismatching, bogus, stsMx, plainMx]) await mx.close();
  await policyHost.close();
});

/** The attempts these tests read back: the event log's delivery events. */
type Attempt = DeliveryEvent;
async function finalEvent(id: string): Promise<Attempt> {
  const events = await attemptsFor<Attempt>(join(dir, 'pp', 'log', 'events'), id);
  return events[events.length - 1];
}
const received = (mx: ScriptedMx, rcpt: string): number => mx.messages.filter((m) => m.to.includes(rcpt)).length;

test('a TLSA record matching the MX key: delivered under dane, verified', async () => {
  const id = await inject(mta.smtpPort, 'a@shop.example', ['user@match.dane.test'], message('dane'));
  expect(await finalEvent(id)).toMatchObject({ status: 'delivered', mx_host: 'mx.match.dane.test', tls_policy: 'dane', tls_verified: true });
  expect(matching.secured).toBeGreaterThanOrEqual(1);
  expect(received(matching, 'user@match.dane.test')).toBe(1);
});

test('a TLSA record that matches nothing the MX presents: deferred after the handshake, never delivered, never in clear', async () => {
  const id = await inject(mta.smtpPort, 'a@shop.example', ['user@mismatch.dane.test'], message('dane'));
  expect(await finalEvent(id)).toMatchObject({ status: 'deferred', error_kind: 'tls-required', tls_policy: 'dane', tls_verified: false, tls_failure: 'tlsa-invalid' });
  // It got as far as the certificate: the MX sees its side of the handshake finish a moment after the MTA
  // logged the deferral (the two processes run on their own schedules), so that is waited for, not read at once.
  await waitUntil(() => mismatching.secured >= 1, 10_000, () => `the MX saw ${mismatching.connections} connection(s), none reaching TLS`);
  // Every session that reached the MX went to TLS and stopped there: no clear-text retry carried the message.
  await waitUntil(() => mismatching.connections === mismatching.secured, 10_000, () => `${mismatching.connections} connection(s), ${mismatching.secured} in TLS`);
  expect(received(mismatching, 'user@mismatch.dane.test')).toBe(0);
});

test('a TLSA record whose signature fails validation: deferred, the MX never connected to', async () => {
  const id = await inject(mta.smtpPort, 'a@shop.example', ['user@bogus.dane.test'], message('dane'));
  expect(await finalEvent(id)).toMatchObject({ status: 'deferred', error_kind: 'tls-required', smtp_code: 451, enhanced_code: '4.7.5', tls_policy: 'dane', tls_verified: false, tls_failure: 'dnssec-invalid' });
  expect(bogus.connections).toBe(0);
  // The worker's warning reaches the MTA's log through the primary's pipe, after the attempt's event: waited for, not read at once.
  const warned = /"mx_host":"mx\.bogus\.dane\.test".*"tls_failure":"dnssec-invalid"/;
  await waitUntil(() => warned.test(mta.log()), 10_000, () => 'no dnssec-invalid warning in the MTA log');
  expect(mta.log()).toMatch(warned);
});

test('no TLSA (securely denied) and an MTA-STS policy: auto falls back to mta-sts, verified against delivery.tls_ca_file', async () => {
  const id = await inject(mta.smtpPort, 'a@shop.example', ['user@sts.dane.test'], message('dane'));
  expect(await finalEvent(id)).toMatchObject({ status: 'delivered', mx_host: 'mx.sts.dane.test', tls_policy: 'mta-sts', tls_verified: true });
  expect(stsMx.secured).toBeGreaterThanOrEqual(1);
  expect(received(stsMx, 'user@sts.dane.test')).toBe(1);
});

test('no TLSA and no MTA-STS policy: auto falls back to may', async () => {
  const id = await inject(mta.smtpPort, 'a@shop.example', ['user@plain.dane.test'], message('dane'));
  const attempt = await finalEvent(id);
  expect(attempt).toMatchObject({ status: 'delivered', mx_host: 'mx.plain.dane.test', tls_policy: 'may', tls_verified: false });
  expect(attempt.tls_failure).toBeUndefined();
  expect(received(plainMx, 'user@plain.dane.test')).toBe(1);
});
