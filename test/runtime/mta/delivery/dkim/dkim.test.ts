import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalizeBodyRelaxed, DkimSigner } from '../../../../../runtime/mta/delivery/dkim/dkim';
import type { DkimKeyConfig } from '../../../../../runtime/shared/config/types';
import { dkimVerify } from '../../../../helpers/dkim-verify';
import { tempDir } from '../../../../helpers/tmp';

const dir = tempDir('volley-dkim-');
const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ed = generateKeyPairSync('ed25519');
const ed2 = generateKeyPairSync('ed25519');

function writePem(name: string, key: KeyObject): string {
  const file = join(dir, name);
  writeFileSync(file, key.export({ type: 'pkcs8', format: 'pem' }));
  return file;
}
const rsaFile = writePem('rsa.pem', rsa.privateKey);
const edFile = writePem('ed.pem', ed.privateKey);
const ed2File = writePem('ed2.pem', ed2.privateKey);

// DNS TXT records as published: SPKI DER for RSA, the raw 32-byte key for Ed25519 (RFC 8463).
const rsaTxt = `v=DKIM1; k=rsa; p=${rsa.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;
const edRaw = Buffer.from(ed.publicKey.export({ format: 'jwk' }).x as string, 'base64url');
const ed2Raw = Buffer.from(ed2.publicKey.export({ format: 'jwk' }).x as string, 'base64url');
const edTxt = `v=DKIM1; k=ed25519; p=${edRaw.toString('base64')}`;
const records: Record<string, string> = {
  'r1._domainkey.example.com': rsaTxt,
  'e1._domainkey.example.com': edTxt,
  'e2._domainkey.news.example.com': `v=DKIM1; k=ed25519; p=${ed2Raw.toString('base64')}`,
};

// Dual signing for example.com: one rsa and one ed25519 key.
const keys: DkimKeyConfig[] = [
  { domain: 'example.com', selector: 'r1', algorithm: 'rsa-sha256', privateKeyFile: rsaFile },
  { domain: 'example.com', selector: 'e1', algorithm: 'ed25519-sha256', privateKeyFile: edFile },
];

const crlf = (lines: string[]) => Buffer.from(lines.join('\r\n'), 'utf8');

const messages: Record<string, Buffer> = {
  plain: crlf([
    'From: alice@example.com',
    'To: bob@example.net',
    'Subject: hello',
    'Date: Thu, 15 Jan 2026 12:00:00 +0000',
    'Message-ID: <plain.1@example.com>',
    'X-Unsigned: not in h=',
    '',
    'Hello Bob,',
    'just a line.',
    '',
  ]),
  folded: crlf([
    'From: alice@example.com',
    'To: bob@example.net,',
    '\tcarol@example.net,',
    '  dave@example.net',
    'Subject: a long subject',
    ' \t that is folded   over two lines',
    'MIME-Version: 1.0',
    'Content-Type: text/plain;',
    '\tcharset="us-ascii"',
    'List-Unsubscribe: <https://example.com/u?x=1>,',
    ' <mailto:unsub@example.com>',
    'List-Unsubscribe-Post: List-Unsubscribe=One-Click',
    '',
    'body',
    '',
  ]),
  trailingWhitespace: crlf([
    'From: alice@example.com',
    'Subject:   spaces   around   ',
    'To: bob@example.net',
    '',
    'line with trailing spaces   ',
    'tabs\t\tand  double  spaces\t',
    '   ',
    '',
    'after an empty line',
    '',
    '\t',
    '',
    '',
    '',
  ]),
  utf8Body: crlf([
    'From: =?UTF-8?B?SsO8cmdlbg==?= <juergen@example.com>',
    'To: bob@example.net',
    'Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    'Grüße aus Köln — ünïcödé, 日本語, emoji 😀',
    'Zweite Zeile  mit  Leerzeichen ',
    '',
  ]),
  displayName: crlf([
    'From: "Doe, Jane (Sales)" <Jane.Doe@EXAMPLE.COM> (a comment with @evil.org)',
    'Reply-To: "Other" <other@elsewhere.org>',
    'To: Bob <bob@example.net>',
    'Cc: carol@example.net',
    'Subject: with display name',
    'In-Reply-To: <a@example.net>',
    'References: <a@example.net>',
    '',
    'Hi',
    '',
  ]),
  subdomain: crlf([
    'From: News <news@news.example.com>',
    'To: bob@example.net',
    'Subject: parent key signs subdomain',
    '',
    'relaxed alignment: d=example.com',
    '',
  ]),
  noFinalNewline: crlf(['From: alice@example.com', 'To: bob@example.net', 'Subject: no final CRLF', '', 'last line without CRLF']),
  emptyBody: crlf(['From: alice@example.com', 'To: bob@example.net', 'Subject: empty body', '', '']),
  // Bare LF line ends (not what the spool holds): signed as if CRLF, as transports send it.
  lfOnly: Buffer.from('From: alice@example.com\nTo: bob@example.net\nSubject: lf\n  folded\n\nbody  line \n\n'),
  twoToFields: crlf(['From: alice@example.com', 'To: bob@example.net', 'To: carol@example.net', 'Subject: two To', '', 'x', '']),
};

const signer = new DkimSigner(keys, { now: () => NOW });

describe('DkimSigner', () => {
  const signed: Record<string, Buffer> = {};
  for (const [name, m] of Object.entries(messages)) signed[name] = signer.sign(m).message;

  it('signs with rsa-sha256 and ed25519-sha256; python3-dkim verifies every signature', async () => {
    const names = Object.keys(signed);
    const out = await dkimVerify(dir, Object.values(signed), records);
    // python3-dkim verifies ed25519 only with PyNaCl; the installed one has it (dkimpy 1.1.4),
    // so there is no node:crypto fallback here: a verifier without it fails this test.
    expect(out.ed25519).toBe(true);
    names.forEach((name, i) => {
      const r = out.results[i];
      expect({ name, sigs: r.signatures.map((s) => `${s.a} d=${s.d} s=${s.s} ok=${s.ok} ${s.error ?? ''}`.trim()) }).toEqual({
        name,
        sigs: ['rsa-sha256 d=example.com s=r1 ok=true', 'ed25519-sha256 d=example.com s=e1 ok=true'],
      });
      expect(r.verify).toBe(true);
    });
  });

  it('a tampered message fails verification; relaxed whitespace changes still pass', async () => {
    const base = signed.plain.toString('latin1');
    const variants = [
      base.replace('just a line.', 'just a lime.'), // body changed
      base.replace('Subject: hello', 'Subject: hellO'), // signed header changed
      // A second From: added below the signatures, as a replayer would: from is oversigned.
      base.replace('From: alice@example.com', 'From: mallory@example.org\r\nFrom: alice@example.com'),
      base.replace('X-Unsigned: not in h=', 'X-Unsigned: changed'), // unsigned header: still valid
      base.replace('Hello Bob,', 'Hello   Bob,\t'), // relaxed body: still valid
      base.replace('Subject: hello', 'subject:    hello'), // relaxed header: still valid
    ].map((s) => Buffer.from(s, 'latin1'));
    const out = await dkimVerify(dir, variants, records);
    const oks = out.results.map((r) => r.signatures.map((s) => s.ok));
    expect(oks).toEqual([
      [false, false],
      [false, false],
      [false, false],
      [true, true],
      [true, true],
      [true, true],
    ]);
  });

  it('writes the expected tags: relaxed/relaxed, t=, h= of present headers with from oversigned', () => {
    const head = signed.folded.toString('latin1').split('\r\n\r\n')[0].replace(/\r\n[ \t]+/g, ' ');
    const sigs = head.split('\r\n').filter((l) => l.startsWith('DKIM-Signature:'));
    expect(sigs).toHaveLength(2);
    for (const s of sigs) {
      expect(s).toContain('v=1;');
      expect(s).toContain('c=relaxed/relaxed;');
      expect(s).toContain('d=example.com;');
      expect(s).toContain(`t=${NOW / 1000};`);
      expect(s).toMatch(/ h=from:to:subject:mime-version:content-type:list-unsubscribe:list-unsubscribe-post:from;/);
    }
    expect(sigs[0]).toContain('a=rsa-sha256;');
    expect(sigs[1]).toContain('a=ed25519-sha256;');
    // Every line of the signature fields stays short.
    for (const line of signed.folded.toString('latin1').split('\r\n')) expect(line.length).toBeLessThanOrEqual(998);
    // Two instances of To: both signed.
    expect(signed.twoToFields.toString('latin1')).toMatch(/h=from:to:to:subject:from;/);
  });

  it('returns domain and selector, and the original message follows the signatures unchanged', () => {
    const r = signer.sign(messages.subdomain);
    expect(r.domain).toBe('example.com');
    expect(r.selector).toBe('r1');
    expect(r.message.subarray(r.message.length - messages.subdomain.length).equals(messages.subdomain)).toBe(true);
  });

  it('prefers the exact domain over a parent one', async () => {
    const s = new DkimSigner([...keys, { domain: 'news.example.com', selector: 'e2', algorithm: 'ed25519-sha256', privateKeyFile: ed2File }]);
    const r = s.sign(messages.subdomain);
    expect(r.domain).toBe('news.example.com');
    expect(r.selector).toBe('e2');
    const out = await dkimVerify(dir, [r.message], records);
    expect(out.results[0].signatures.map((x) => [x.d, x.ok])).toEqual([['news.example.com', true]]);
  });

  it('uses configured headers (from always added)', () => {
    const s = new DkimSigner([{ ...keys[1], headers: ['Subject', 'X-Unsigned', 'X-Absent'] }]);
    const out = s.sign(messages.plain).message.toString('latin1');
    expect(out).toMatch(/h=from:subject:x-unsigned:from;/);
  });

  it('leaves a message with no matching key or no From unchanged', () => {
    const other = crlf(['From: someone@example.org', 'To: x@example.net', '', 'hi', '']);
    const lookalike = crlf(['From: someone@notexample.com', 'To: x@example.net', '', 'hi', '']);
    const noFrom = crlf(['To: x@example.net', 'Subject: none', '', 'hi', '']);
    for (const m of [other, lookalike, noFrom]) {
      const r = signer.sign(m);
      expect(r.message).toBe(m);
      expect(r.domain).toBeUndefined();
    }
    expect(new DkimSigner([]).sign(messages.plain).message).toBe(messages.plain);
  });

  it('throws EDKIMKEY naming domain, selector and file for a missing or wrong-type key', () => {
    const missing = join(dir, 'nope.pem');
    expect(() => new DkimSigner([{ ...keys[0], privateKeyFile: missing }])).toThrow(
      expect.objectContaining({ code: 'EDKIMKEY', message: expect.stringContaining(missing) }),
    );
    expect(() => new DkimSigner([{ ...keys[0], privateKeyFile: missing }])).toThrow(/example\.com selector r1/);
    // An Ed25519 key configured as rsa-sha256, and the other way round.
    expect(() => new DkimSigner([{ ...keys[0], privateKeyFile: edFile }])).toThrow(expect.objectContaining({ code: 'EDKIMKEY' }));
    expect(() => new DkimSigner([{ ...keys[1], privateKeyFile: rsaFile }])).toThrow(expect.objectContaining({ code: 'EDKIMKEY' }));
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'not a key\n');
    expect(() => new DkimSigner([{ ...keys[1], privateKeyFile: garbage }])).toThrow(
      expect.objectContaining({ code: 'EDKIMKEY', message: expect.stringContaining(garbage) }),
    );
  });

  it('canonicalizes bodies as RFC 6376 relaxed', () => {
    const c = (s: string) => canonicalizeBodyRelaxed(Buffer.from(s, 'latin1')).toString('latin1');
    expect(c('')).toBe('');
    expect(c('\r\n\r\n')).toBe('');
    expect(c(' \t\r\n')).toBe('');
    expect(c('a  b\t c \r\n\r\n\r\n')).toBe('a b c\r\n');
    expect(c('x')).toBe('x\r\n');
    expect(c(' lead\r\n\r\nend')).toBe(' lead\r\n\r\nend\r\n');
  });
});
