// Acceptance of inbound reports end to end: a real `volley mta` with VERP on
// delivers to Postfix's smtp-sink, which accepts; the test then plays the
// receiving side days later and sends, over SMTP to the MTA's own inbound
// listener, a Postfix DSN (test/fixtures/reports/ as the template) addressed
// to the VERP return path the sink saw, and a Yahoo-style ARF complaint that
// quotes the message's headers; the `bounce` and `complaint` events reach a
// real HTTPS webhook receiver. A forged VERP token is kept in
// inbound/unmatched/ and makes no event, and the MTA stays up throughout.
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deliveryConfigYaml } from '../../../helpers/config';
import { startMta, type MtaProcess } from '../../../helpers/mta-process';
import { getFreePort, startSmtpSink, type DumpedMessage, type SmtpSinkHandle } from '../../../helpers/postfix-tools';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { inject, message, SmtpDialog } from '../../../helpers/smtp-dialog';
import { tempDir } from '../../../helpers/tmp';
import { startWebhookReceiver, type WebhookReceiver } from '../../../helpers/webhook-receiver';

jest.setTimeout(120_000);

const dir = tempDir('volley-bounce-e2e-');
const pp = join(dir, 'pp');
let sink: SmtpSinkHandle;
let hook: WebhookReceiver;
let mta: MtaProcess;
let inboundPort: number;

beforeAll(async () => {
  // smtp-sink runs as nobody: it must reach its dump directory inside ours.
  chmodSync(dir, 0o755);
  sink = await startSmtpSink({ dumpDir: join(dir, 'dumps') });
  mkdirSync(join(dir, 'recv'));
  hook = await startWebhookReceiver({ dir: join(dir, 'recv') });
  inboundPort = await getFreePort();
  const key = join(dir, 'verp.key');
  writeFileSync(key, 'an-acceptance-test-verp-key-of-more-than-32-bytes\n', { mode: 0o600 });
  const config = join(dir, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: ${sink.port} }]
delivery: { retry: [1h] }
inbound: { address: 127.0.0.1, port: ${inboundPort}, domains: [bounces.shop.example], verp: { domain: bounces.shop.example, prefix: bounce, secret_file: ${key} } }
events:
  sinks:
    - { name: reports, type: webhook, url: "${hook.url}", secret_files: [${hook.secretFiles[0]}], ca_file: ${hook.caFile}, max_wait: 100ms, filter: { kinds: [bounce, complaint, unsubscribe] } }
`),
  );
  mta = await startMta({ configPath: config, persistentPath: pp, workers: 2 });
});
afterAll(async () => {
  await mta?.stop();
  await hook?.close();
  await sink?.stop();
});

function fixture(name: string): string {
  return readFileSync(join(__dirname, '../../../fixtures/reports', name), 'latin1');
}

/** Sends `text` to the MTA's inbound listener as a receiving MTA would: CRLF, dots doubled. */
async function report(from: string, to: string, text: string): Promise<number> {
  const s = await SmtpDialog.open(inboundPort);
  expect((await s.reply()).code).toBe(220);
  expect((await s.command('EHLO mx.dest.example')).code).toBe(250);
  const r = await s.transaction(from, [to], text.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..'));
  await s.quit();
  return r.code;
}

/** The message the sink got for `rcpt`, and its X-Volley-Id. */
async function delivered(rcpt: string): Promise<{ dump: DumpedMessage; id: string }> {
  let dump: DumpedMessage | undefined;
  await waitUntil(() => sink.messages() >= 1 && readdirSync(join(dir, 'dumps')).length > 0, 30_000, () => `${sink.messages()} at the sink; ${sink.stderr().slice(-500)}\n${mta.log().slice(-2500)}`);
  for (let i = 0; i < 300 && !dump; i++) {
    dump = (await sink.readDumps()).find((d) => d.rcptTo.map(bare).includes(rcpt));
    if (!dump) await new Promise((r) => setTimeout(r, 100));
  }
  expect(dump).toBeDefined();
  const id = /^X-Volley-Id: (\S+)$/im.exec(dump!.content)![1];
  return { dump: { ...dump!, mailFrom: bare(dump!.mailFrom), rcptTo: dump!.rcptTo.map(bare) }, id };
}

/** smtp-sink records the command's arguments (`<addr> SIZE=…`): the address alone. */
function bare(args: string): string {
  return /<([^>]*)>/.exec(args)?.[1] ?? args;
}

const received = (kind: string): Record<string, unknown>[] => hook.accepted().flatMap((q) => q.events).filter((e) => e.event === kind);
const unmatched = (): string[] => readdirSync(join(pp, 'inbound', 'unmatched')).filter((f) => f.endsWith('.eml'));

test('a DSN to the VERP return path the sink saw becomes a bounce for that message and recipient at the webhook', async () => {
  const rcpt = 'gone@dest.example';
  await inject(mta.smtpPort, 'news@shop.example', [rcpt], message('December offers', 'hello', 'Message-ID: <offers.1@shop.example>\r\n'));
  const { dump, id } = await delivered(rcpt);
  // VERP: the return path is ours, one recipient per transaction.
  expect(dump.mailFrom).toMatch(/^bounce\+[0-9a-z]+@bounces\.shop\.example$/);
  expect(dump.rcptTo).toEqual([rcpt]);

  // Days later the receiving side gives up on the mailbox: a Postfix DSN, to that return path, quoting what it got.
  const template = fixture('postfix-dsn.eml');
  const fixtureVerp = /^To: (\S+)$/m.exec(template)![1];
  const dsn = template
    .split(fixtureVerp).join(dump.mailFrom)
    .split('01M8RDABERFSBSJVJM2CRMGMXK').join(id)
    .split('no.such.user@example.net').join(rcpt);
  expect(await report('', dump.mailFrom, dsn)).toBe(250);

  await waitUntil(() => received('bounce').length >= 1, 30_000, () => mta.log().slice(-2000));
  expect(received('bounce')).toEqual([expect.objectContaining({ event: 'bounce', status: 'failed', message_id: id, recipient: rcpt, matched_by: 'verp', enhanced_code: '5.1.1', bounce_category: 'bad-mailbox', reporting_mta: 'mail.example.net' })]);
  expect(hook.requests.every((q) => q.verified[0])).toBe(true);
});

test('an ARF complaint quoting the message (no VERP address in it) is matched by X-Volley-Id; a forged VERP token goes to inbound/unmatched/ and makes no event; the MTA stays up', async () => {
  const rcpt = 'complainer@dest.example';
  await inject(mta.smtpPort, 'news@shop.example', [rcpt], message('December offers', 'hello'));
  const { dump, id } = await delivered(rcpt);

  // First a forged bounce: its token does not pass the MTA's HMAC.
  const forged = fixture('forged-verp-dsn.eml');
  const forgedTo = /^To: (\S+)$/m.exec(forged)![1];
  expect(await report('', forgedTo, forged)).toBe(250);
  await waitUntil(() => unmatched().length === 1, 10_000);
  // The log line comes through the MTA's output pipe, on its own schedule after the file is synced: waited for, not read at once.
  const notMapped = /inbound: message not mapped.*forged-token|forged-token.*inbound: message not mapped/;
  await waitUntil(() => notMapped.test(mta.log()), 10_000, () => 'no "message not mapped … forged-token" line in the MTA log');

  // Then a Yahoo-style complaint: the message as the sink got it is quoted, Return-Path and all non-VERP.
  const quoted = dump.content.replace(/^Return-Path:.*\n/gim, '');
  const template = fixture('yahoo-arf.eml');
  const arf = template
    .slice(0, template.indexOf('Return-Path: <bounces@bounces.shop.example>\nReceived: from 198.51.100.10'))
    .concat(quoted.endsWith('\n') ? quoted : `${quoted}\n`, '\n------=_Part_1764583330_88123--\n')
    .split('complainer@yahoo.com').join(rcpt);
  expect(arf).toContain(`X-Volley-Id: ${id}`);
  expect(await report('', 'fbl@bounces.shop.example', arf)).toBe(250);

  await waitUntil(() => received('complaint').length >= 1, 30_000, () => mta.log().slice(-2000));
  expect(received('complaint')).toEqual([expect.objectContaining({ event: 'complaint', message_id: id, recipient: rcpt, matched_by: 'header', feedback_type: 'abuse' })]);
  // The forged one made nothing: the only reports at the webhook are this test's complaint and the last test's bounce.
  expect(received('bounce')).toHaveLength(1);
  expect(unmatched()).toHaveLength(1);
  expect(readFileSync(join(pp, 'inbound', 'unmatched', unmatched()[0]), 'latin1')).toContain(forgedTo);

  // Still up: the admin port answers, the inbound listener still takes mail, the primary and its workers never restarted.
  expect(mta.proc.exitCode).toBeNull();
  expect((await fetch(`${mta.adminUrl}/readyz`)).status).toBe(200);
  expect(await report('', 'fbl@bounces.shop.example', fixture('plain-mail.eml'))).toBe(250);
  expect(mta.log()).not.toMatch(/worker \d+ exited|uncaught/i);
});
