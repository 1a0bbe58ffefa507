// The RFC 6152 downgrade: 8-bit parts become quoted-printable, and what a
// MIME parser reads from the result is what it read from the original.
import { isAscii } from 'node:buffer';
import { simpleParser } from 'mailparser';
import { toSevenBit } from '../../../../runtime/shared/smtp/seven-bit';

const crlf = (lines: string[]): Buffer => Buffer.from(lines.join('\r\n'), 'utf8');

test('a plain 8-bit text message: quoted-printable, MIME-Version added, the text and the other headers unchanged', async () => {
  const long = 'Grüße aus Köln, '.repeat(12);
  const original = crlf(['From: a@shop.test', 'Subject: hello', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit', '', 'Größe: 42 €', long, 'trailing space ', '']);
  const converted = toSevenBit(original);
  expect(isAscii(converted)).toBe(true);
  const text = converted.toString();
  expect(text).toMatch(/^From: a@shop\.test\r\nSubject: hello\r\nContent-Type: text\/plain; charset=utf-8\r\nMIME-Version: 1\.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n/);
  expect(text).not.toMatch(/Content-Transfer-Encoding: 8bit/);
  expect(Math.max(...text.split('\r\n').map((l) => l.length))).toBeLessThanOrEqual(76);
  expect((await simpleParser(converted)).text).toBe((await simpleParser(original)).text);
});

test('a multipart: only the 8-bit part is re-encoded; base64 attachments, the boundaries and a folded old encoding header are handled', async () => {
  const original = crlf([
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b1"',
    '',
    'preamble',
    '--b1',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding:',
    ' 8bit',
    '',
    'naïve café',
    '--b1',
    'Content-Type: application/octet-stream',
    'Content-Transfer-Encoding: base64',
    '',
    Buffer.from([0, 1, 2, 0xff]).toString('base64'),
    '--b1',
    'Content-Type: text/plain',
    '',
    'plain ascii',
    '--b1--',
    'epilogue',
    '',
  ]);
  const converted = toSevenBit(original);
  expect(isAscii(converted)).toBe(true);
  const text = converted.toString();
  expect(text).toContain('Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=C3=AFve caf=C3=A9\r\n--b1\r\n');
  expect(text).toContain('--b1\r\nContent-Type: text/plain\r\n\r\nplain ascii\r\n--b1--\r\nepilogue');
  const [a, b] = await Promise.all([simpleParser(original), simpleParser(converted)]);
  expect(b.text).toBe(a.text);
  expect(b.attachments.map((x) => x.content)).toEqual(a.attachments.map((x) => x.content));
});

test('8-bit binary content in a non-text part decodes to the same bytes (CR and LF encoded)', async () => {
  const bytes = Buffer.from([0xde, 0xad, 0x0d, 0x0a, 0x0a, 0xbe, 0xef]);
  const original = Buffer.concat([crlf(['Content-Type: multipart/mixed; boundary=zz', '', '--zz', 'Content-Type: application/octet-stream', 'Content-Transfer-Encoding: binary', '', '']), bytes, crlf(['', '--zz--', ''])]);
  const converted = toSevenBit(original);
  expect(isAscii(converted)).toBe(true);
  const parsed = await simpleParser(converted);
  expect(parsed.attachments[0].content).toEqual(bytes);
});

test('an embedded message/rfc822 is walked into, and its carrier says 7bit', () => {
  const original = crlf(['Content-Type: message/rfc822', 'Content-Transfer-Encoding: 8bit', '', 'Subject: inner', 'Content-Type: text/plain; charset=utf-8', '', 'über', '']);
  const text = toSevenBit(original).toString();
  expect(text).toBe(['Content-Type: message/rfc822', 'MIME-Version: 1.0', 'Content-Transfer-Encoding: 7bit', '', 'Subject: inner', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable', '', '=C3=BCber', ''].join('\r\n'));
});

test('7-bit mail is returned as it was', () => {
  const original = crlf(['Subject: x', '', 'plain', '']);
  expect(toSevenBit(original).equals(original)).toBe(true);
});

test.each([
  ['raw 8-bit bytes in a header', crlf(['Subject: Grüße', '', 'x', ''])],
  ['8-bit bytes in a base64 part', crlf(['Content-Type: text/plain', 'Content-Transfer-Encoding: base64', '', 'ü', ''])],
  ['8-bit bytes in a preamble', crlf(['Content-Type: multipart/mixed; boundary=q', '', 'ü', '--q', '', 'x', '--q--', ''])],
  ['a multipart without a boundary', crlf(['Content-Type: multipart/mixed', '', 'ü', ''])],
])('cannot be converted: %s (ECONVERT)', (_what, message) => {
  expect(() => toSevenBit(message)).toThrow(expect.objectContaining({ code: 'ECONVERT' }));
});
