import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deliveryConfigYaml } from '../../../../helpers/config';
import { startMta, type MtaProcess } from '../../../../helpers/mta-process';
import { ScriptedMx } from '../../../../helpers/scripted-mx';
import { pipeliningMx, type PipeliningMx } from '../../../../helpers/pipelining-mx';
import { SmtpDialog, message } from '../../../../helpers/smtp-dialog';
import { tempDir } from '../../../../helpers/tmp';
import { readAttempts } from '../../../../helpers/attempt-log';
import { buildDsn } from '../../../../../runtime/mta/delivery/records/dsn';
import { waitUntil } from '../../../../helpers/proxy-fixtures';

const dir = tempDir();
const failing = new ScriptedMx({
  rcpt: (r) => (r.startsWith('gone@') ? [550, '5.1.1 user unknown'] : r.startsWith('full@') ? [552, '5.2.2 over your storage plan'] : undefined),
});
const senders = new ScriptedMx();
let mta: MtaProcess;
/** A raw MX (smtp-server would clean its reply) whose refusal has a bare CR inside its line: broken or hostile, the receiver's to choose. */
let crMx: PipeliningMx;

beforeAll(async () => {
  await failing.listen();
  await senders.listen();
  crMx = await pipeliningMx([], { pipelining: false, rcpt: () => '550 5.1.1 no such\ruser here' });
  const config = join(dir, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`routes:
  - { domain: fail.test, host: 127.0.0.1, port: ${failing.port} }
  - { domain: shop.example, host: 127.0.0.1, port: ${senders.port} }
  - { domain: cr.test, host: 127.0.0.1, port: ${crMx.port} }
bounce_rules:
  - { category: inactive, enhanced: "5\\\\.2\\\\.2", text: "storage plan" }
delivery: { retry: [1h], dsn: true }
`),
  );
  mta = await startMta({ configPath: config, persistentPath: join(dir, 'pp'), workers: 1 });
});
afterAll(async () => {
  await mta?.stop();
  await failing.close();
  await senders.close();
  await new Promise((r) => crMx.server.close(r));
});

test('a hard failure sends an RFC 3464 DSN to the return path; a config rule classifies it first', async () => {
  const s = await SmtpDialog.open(mta.smtpPort);
  await s.reply();
  await s.command('EHLO i.test');
  const r = await s.transaction('news@shop.example', ['gone@fail.test', 'full@fail.test', 'ok@fail.test'], message('offer', 'buy now'));
  expect(r.code).toBe(250);
  await s.quit();
  await senders.waitFor(1);
  const dsn = senders.messages[0];
  expect(dsn.from).toBe('');
  expect(dsn.to).toEqual(['news@shop.example']);
  expect(dsn.body).toMatch(/Content-Type: multipart\/report; report-type=delivery-status/);
  expect(dsn.body).toMatch(/Reporting-MTA: dns; mta\.test\.example/);
  expect(dsn.body).toMatch(/Final-Recipient: rfc822; gone@fail\.test\r\nAction: failed\r\nStatus: 5\.1\.1/);
  expect(dsn.body).toMatch(/Final-Recipient: rfc822; full@fail\.test\r\nAction: failed\r\nStatus: 5\.2\.2/);
  expect(dsn.body).not.toMatch(/ok@fail\.test\r\nAction/);
  expect(dsn.body).toMatch(/Content-Type: text\/rfc822-headers\r\n\r\n[^]*Subject: offer/);

  const read = () => readAttempts<{ recipient?: string; status?: string; sender?: string; bounce_category?: string }>(join(dir, 'pp', 'log', 'events'));
  // The MX has the DSN before the MTA has its 250 and logged it: wait for that event.
  const dsnDelivered = (e: { recipient?: string; status?: string; sender?: string }) => e.recipient === 'news@shop.example' && e.status === 'delivered' && e.sender === '';
  await waitUntil(() => read().some(dsnDelivered), 5000, () => 'the DSN\'s delivery is not logged');
  const events = read();
  const cat = Object.fromEntries(events.filter((e) => e.status === 'failed').map((e) => [e.recipient, e.bounce_category]));
  expect(cat).toEqual({ 'gone@fail.test': 'bad-mailbox', 'full@fail.test': 'inactive' });
  // The DSN itself was delivered like any message, from the null sender.
  expect(events.some(dsnDelivered)).toBe(true);
});

test('a failure reply with a bare CR in its text (the MX chooses it) makes a DSN without one: RFC 5321 2.3.8, bare CR is never sent; the text is kept, the CR made a space', async () => {
  const before = senders.messages.length;
  const s = await SmtpDialog.open(mta.smtpPort);
  await s.reply();
  await s.command('EHLO i.test');
  expect((await s.transaction('news@shop.example', ['x@cr.test'], message('offer', 'buy now'))).code).toBe(250);
  await s.quit();
  await senders.waitFor(before + 1);
  const dsn = senders.messages[before].raw.toString('latin1');
  // Every CR in what reached the MX is the start of a CRLF.
  expect([...dsn.matchAll(/\r(?!\n)/g)].map((m) => JSON.stringify(dsn.slice(Math.max(0, m.index - 20), m.index + 20)))).toEqual([]);
  // And the reply still parses: its enhanced code is the Status, its text kept.
  expect(dsn).toMatch(/Final-Recipient: rfc822; x@cr\.test\r\nAction: failed\r\nStatus: 5\.1\.1\r\nDiagnostic-Code: smtp; 550 5\.1\.1 no such user here\r\n/);
  expect(dsn).toMatch(/<x@cr\.test>: 550 5\.1\.1 no such user here\r\n/);
});

test('buildDsn puts a reply text holding CR or LF (from an older attempt log, or the proxy) on one line: no bare CR or LF in the DSN', () => {
  const dsn = buildDsn({
    reportingMta: 'mta.test.example',
    originalFrom: 'news@shop.example',
    messageId: 'ID1',
    originalMessage: Buffer.from('Subject: offer\r\n\r\nbuy now\r\n'),
    arrival: new Date(0),
    failures: [{ rcpt: 'x@cr.test', reply: { code: 550, enhanced: '5.1.1', text: 'no such\ruser\nhere\r\nat all' }, expired: false }],
  }).toString('latin1');
  expect(dsn).toContain('Diagnostic-Code: smtp; 550 5.1.1 no such user here at all\r\n');
  expect(dsn).toContain('<x@cr.test>: 550 5.1.1 no such user here at all\r\n');
  expect(dsn.match(/\r(?!\n)|(?<!\r)\n/g)).toBeNull();
});
