import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { classify } from '../../../../runtime/mta/delivery/records/bounce-category';
import { buildDsn } from '../../../../runtime/mta/delivery/records/dsn';
import { Verp } from '../../../../runtime/mta/delivery/records/verp';
import { parseReport } from '../../../../runtime/mta/inbound/report';
import { matchReport, type MatchResult } from '../../../../runtime/mta/inbound/report-matcher';

// The fixtures' VERP addresses were made with this key (bounce domain bounces.shop.example).
const KEY = Buffer.from('volley-fixture-verp-key-32-bytes');
const verp = new Verp({ domain: 'bounces.shop.example', prefix: 'bounce', secretFile: '-' }, KEY);
const NOW = Date.parse('2026-12-01T16:00:00Z');

function fixture(name: string): Buffer {
  return readFileSync(join(__dirname, '../../../fixtures/reports', name));
}

/** The fixture as the inbound listener sees it: RCPT TO is the report's To: address (where a mailer daemon sends it). */
async function match(name: string, options: { verp?: Verp | null; raw?: Buffer } = {}): Promise<MatchResult> {
  const raw = options.raw ?? fixture(name);
  const to = /^To:\s*<?([^\s<>]+@[^\s<>]+)>?\s*$/im.exec(raw.toString('latin1'))?.[1];
  return matchReport(await parseReport(raw), {
    envelopeRecipients: to ? [to] : [],
    verp: options.verp === null ? undefined : (options.verp ?? verp),
    nodeId: 'node-a',
    now: () => NOW,
    classify: (r) => classify(r),
  });
}

describe('DSNs as real receivers send them', () => {
  test('Postfix, to a VERP return path: one failed bounce, matched by the token', async () => {
    expect(await match('postfix-dsn.eml')).toEqual({
      ok: true,
      matchedBy: 'verp',
      messageId: '01M8RDABERFSBSJVJM2CRMGMXK',
      events: [
        {
          event: 'bounce',
          status: 'failed',
          time: '2026-12-01T16:00:00.000Z',
          node: 'node-a',
          message_id: '01M8RDABERFSBSJVJM2CRMGMXK',
          recipient: 'no.such.user@example.net',
          domain: 'example.net',
          matched_by: 'verp',
          enhanced_code: '5.1.1',
          smtp_code: 550,
          smtp_text: '<no.such.user@example.net>: Recipient address rejected: User unknown in virtual mailbox table',
          bounce_category: 'bad-mailbox',
          reporting_mta: 'mail.example.net',
          remote_mta: 'mx1.example.net',
        },
      ],
      omitted: 0,
    });
  });

  test('the same Postfix DSN with VERP off matches by its quoted X-Volley-Id and Original-Recipient', async () => {
    const r = await match('postfix-dsn.eml', { verp: null });
    expect(r).toMatchObject({ ok: true, matchedBy: 'header', messageId: '01M8RDABERFSBSJVJM2CRMGMXK', events: [{ recipient: 'no.such.user@example.net', matched_by: 'header' }] });
  });

  test('Exim (Status 5.0.0, the reply says 5.2.1): matched by header, the specific code and its category win', async () => {
    const r = await match('exim-dsn.eml');
    expect(r).toMatchObject({ ok: true, matchedBy: 'header', messageId: '01M8RDA8H0C8XB9R180DXPCJ92' });
    expect((r as Extract<MatchResult, { ok: true }>).events).toEqual([
      expect.objectContaining({ event: 'bounce', status: 'failed', recipient: 'gone@example.org', enhanced_code: '5.2.1', smtp_code: 550, bounce_category: 'inactive', reporting_mta: 'mx.example.org', remote_mta: 'mailstore.example.org' }),
    ]);
  });

  test('Microsoft Exchange / Office 365 NDR (text/rfc822-headers, quoted-printable human part)', async () => {
    const r = await match('exchange-dsn.eml');
    expect(r).toMatchObject({ ok: true, matchedBy: 'header', messageId: '01M8RDACE0WQCH9DWSQWGCHJ61' });
    expect((r as Extract<MatchResult, { ok: true }>).events).toEqual([
      expect.objectContaining({
        event: 'bounce',
        status: 'failed',
        recipient: 'j.smith@contoso.com',
        enhanced_code: '5.1.10',
        smtp_code: 550,
        smtp_text: 'RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
        bounce_category: 'bad-mailbox',
        reporting_mta: 'AM9PR01MB7412.eurprd01.prod.exchangelabs.com',
      }),
    ]);
  });

  test('Gmail: VERP; the multi-line 550-5.1.1 reply is read as one text without its code prefixes', async () => {
    const r = await match('gmail-dsn.eml');
    expect(r).toMatchObject({ ok: true, matchedBy: 'verp', messageId: '01M8RDA9G8VH10H5BAY209MR05' });
    const [e] = (r as Extract<MatchResult, { ok: true }>).events as unknown as Record<string, unknown>[];
    expect(e).toMatchObject({ event: 'bounce', status: 'failed', recipient: 'olduser@gmail.com', enhanced_code: '5.1.1', smtp_code: 550, bounce_category: 'bad-mailbox', reporting_mta: 'googlemail.com' });
    expect(e.smtp_text).toBe(
      "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. For more information, go to https://support.google.com/mail/?p=NoSuchUser 41be03b00d2f7-7fd2eb1c4c1si12345a12.1 - gsmtp",
    );
  });

  test('several recipients: failed and delayed each become a bounce event; delivered none', async () => {
    const r = await match('multi-recipient-dsn.eml');
    expect(r).toMatchObject({ ok: true, matchedBy: 'header', messageId: '01M8RDA9G819AX49QPQ8BBJ6RT' });
    expect((r as Extract<MatchResult, { ok: true }>).events).toEqual([
      expect.objectContaining({ event: 'bounce', status: 'failed', recipient: 'alice@example.com', enhanced_code: '5.2.2', smtp_code: 552, bounce_category: 'quota', remote_mta: 'mail.example.com' }),
      expect.objectContaining({ event: 'bounce', status: 'delayed', recipient: 'bob@example.com', enhanced_code: '4.4.1', smtp_code: 451, bounce_category: 'routing' }),
    ]);
  });
});

describe('ARF feedback reports', () => {
  test('Yahoo: an abuse complaint for Original-Rcpt-To, matched by the quoted X-Volley-Id', async () => {
    expect(await match('yahoo-arf.eml')).toEqual({
      ok: true,
      matchedBy: 'header',
      messageId: '01M8RDA9G8RDGN7B22MCXA1F5Y',
      events: [
        {
          event: 'complaint',
          time: '2026-12-01T16:00:00.000Z',
          node: 'node-a',
          message_id: '01M8RDA9G8RDGN7B22MCXA1F5Y',
          recipient: 'complainer@yahoo.com',
          domain: 'yahoo.com',
          matched_by: 'header',
          feedback_type: 'abuse',
          user_agent: 'Yahoo!-Mail-Feedback/2.0',
          source_ip: '198.51.100.10',
          reported_by: 'arf.mail.yahoo.com',
        },
      ],
      omitted: 0,
    });
  });

  test('AOL: the recipient is redacted, but the quoted VERP Return-Path names message and recipient', async () => {
    const r = await match('aol-arf.eml');
    expect(r).toMatchObject({ ok: true, matchedBy: 'verp', messageId: '01M8RDA7HRPNGSS8G8C6FKWBR6', events: [{ event: 'complaint', recipient: 'reader@aol.com', feedback_type: 'abuse', user_agent: 'AOL SComp', reported_by: 'aol.net' }] });
  });

  test('Microsoft JMRP: a sparse report; message and recipient come from the quoted headers', async () => {
    const r = await match('jmrp-arf.eml');
    expect(r).toMatchObject({ ok: true, matchedBy: 'header', messageId: '01M8RDA8H0MHNEGJ7530SMX9WX', events: [{ event: 'complaint', recipient: 'reader@outlook.com', domain: 'outlook.com', feedback_type: 'abuse', user_agent: 'Hotmail FBL', reported_by: 'hotmail.com' }] });
  });

  test('Feedback-Type: unsubscribe becomes an unsubscribe event', async () => {
    const r = await match('unsubscribe-arf.eml');
    expect(r).toMatchObject({ ok: true, matchedBy: 'header', messageId: '01M8RDA9G8JN8RC3A437AK2ENP', events: [{ event: 'unsubscribe', recipient: 'subscriber@example.net', reported_by: 'mail.example.net' }] });
    expect((r as Extract<MatchResult, { ok: true }>).events).toHaveLength(1);
  });

  test('a Feedback-Type that is neither a complaint nor an unsubscribe (auth-failure) is unmatched, not a complaint', async () => {
    const raw = Buffer.from(fixture('yahoo-arf.eml').toString('latin1').replace('Feedback-Type: abuse', 'Feedback-Type: auth-failure'), 'latin1');
    expect(await match('', { raw })).toMatchObject({ ok: false, reason: 'unhandled-feedback-type' });
  });
});

describe('what cannot be mapped', () => {
  test('a forged VERP token is not believed, even though the report quotes an X-Volley-Id', async () => {
    expect(await match('forged-verp-dsn.eml')).toMatchObject({ ok: false, reason: 'forged-token' });
  });

  test('garbage MIME is unparseable, not a crash', async () => {
    expect(await match('garbage.eml')).toMatchObject({ ok: false, reason: 'unparseable' });
  });

  test('a plain reply is not a report, even when it quotes an X-Volley-Id', async () => {
    expect(await match('plain-mail.eml')).toMatchObject({ ok: false, reason: 'not-a-report' });
  });

  test('a DSN that names only a recipient (no VERP, no X-Volley-Id) names no message', async () => {
    const raw = Buffer.from(fixture('exchange-dsn.eml').toString('latin1').replace(/^X-Volley-Id: .*\n/m, ''), 'latin1');
    expect(await match('', { raw })).toMatchObject({ ok: false, reason: 'no-message' });
  });

  test('an ARF report matched by header but naming no recipient is unmatched', async () => {
    const raw = Buffer.from(fixture('jmrp-arf.eml').toString('latin1').replace(/^X-HmXmrOriginalRecipient: <reader.*\n/m, ''), 'latin1');
    expect(await match('', { raw })).toMatchObject({ ok: false, reason: 'no-recipient' });
  });

  test('reports sent with CRLF line ends (as SMTP carries them) read the same', async () => {
    for (const name of ['postfix-dsn.eml', 'multi-recipient-dsn.eml', 'jmrp-arf.eml']) {
      const crlf = Buffer.from(fixture(name).toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
      expect(await match('', { raw: crlf })).toEqual(await match(name));
    }
  });
});

test("Volley's own DSN (runtime/mta/delivery/dsn.ts) for a VERP'd message, sent back to its return path, maps to message and recipient", async () => {
  const id = '01M8RDABERFSBSJVJM2CRMGMXK';
  const returnPath = verp.address(id, 'gone@example.com')!;
  const original = Buffer.from(`Received: from [203.0.113.5]\r\n\tby mta1.shop.example (Volley) with HTTP id ${id};\r\n\tTue, 01 Dec 2026 09:00:04 +0000\r\nX-Volley-Id: ${id}\r\nFrom: news@shop.example\r\nTo: gone@example.com\r\nSubject: hi\r\n\r\nbody\r\n`);
  const dsn = buildDsn({ reportingMta: 'mta9.other.example', originalFrom: returnPath, messageId: 'THEIRQUEUEID', originalMessage: original, failures: [{ rcpt: 'gone@example.com', reply: { code: 550, enhanced: '5.1.1', text: 'no such user' }, expired: false }], arrival: new Date(NOW) });
  const r = matchReport(await parseReport(dsn), { envelopeRecipients: [returnPath], verp, nodeId: 'node-a', now: () => NOW, classify: (x) => classify(x) });
  expect(r).toMatchObject({ ok: true, matchedBy: 'verp', messageId: id, events: [{ event: 'bounce', status: 'failed', recipient: 'gone@example.com', enhanced_code: '5.1.1', smtp_code: 550, smtp_text: 'no such user', bounce_category: 'bad-mailbox', reporting_mta: 'mta9.other.example' }] });
});
