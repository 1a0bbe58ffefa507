// The RFC 6152 downgrade: an 8-bit MIME message made 7-bit for a server that
// does not offer 8BITMIME. Each leaf part whose body carries 8-bit bytes is
// re-encoded as quoted-printable (RFC 2045 6.7) and its
// Content-Transfer-Encoding says so; multiparts and message/rfc822 parts are
// walked into. What cannot be converted without changing what the sender
// wrote throws ECONVERT: raw 8-bit bytes in a header (they need SMTPUTF8,
// RFC 6532), in a multipart's preamble or epilogue, or in a base64 part.
import { isAscii } from 'node:buffer';
import { encode, wrap } from 'libqp';
import { VolleyError } from '../errors';

/** Nesting deeper than this is not walked (a message crafted to exhaust the stack). */
const MAX_DEPTH = 32;
const EIGHT_BIT = /[\x80-\xff]/;

export function hasEightBit(message: Buffer): boolean {
  return !isAscii(message);
}

/** `message` with every 8-bit body part quoted-printable; throws VolleyError ECONVERT when that cannot be done. */
export function toSevenBit(message: Buffer): Buffer {
  // latin1: one character per byte, so string offsets are byte offsets and nothing is lost.
  return Buffer.from(entity(message.toString('latin1'), 0), 'latin1');
}

function refuse(why: string): never {
  throw new VolleyError('ECONVERT', why);
}

/** One MIME entity (the message, a part, an embedded message): its header, a blank line, its body. */
function entity(text: string, depth: number): string {
  if (depth > MAX_DEPTH) refuse('MIME nesting too deep to convert');
  // The header ends at the first empty line (an entity may start with it: no header); without one it is all header.
  const blank = /^\r?\n/.exec(text) ?? /\r?\n\r?\n/.exec(text);
  const headEnd = blank ? blank.index : text.length;
  const head = text.slice(0, headEnd);
  const sep = blank ? blank[0] : '';
  const body = blank ? text.slice(headEnd + sep.length) : '';
  if (EIGHT_BIT.test(head)) refuse('raw 8-bit bytes in a header (the message needs SMTPUTF8)');
  if (!EIGHT_BIT.test(body)) return text;
  const contentType = field(head, 'content-type') ?? 'text/plain';
  const type = contentType.toLowerCase();
  const encoding = (field(head, 'content-transfer-encoding') ?? '7bit').trim().toLowerCase();
  const eol = /\r\n/.test(text) ? '\r\n' : '\n';
  const top = depth === 0 && field(head, 'mime-version') === undefined ? ['MIME-Version: 1.0'] : [];
  if (type.startsWith('multipart/')) {
    const boundary = /boundary\s*=\s*(?:"([^"]+)"|([^\s;]+))/i.exec(contentType);
    if (!boundary) refuse('a multipart without a boundary');
    return withFields(head, sep, eol, top) + multipart(body, boundary[1] ?? boundary[2], depth);
  }
  if (type.startsWith('message/rfc822')) {
    // The embedded message becomes 7-bit, and so the part that carries it.
    return withFields(head, sep, eol, [...top, 'Content-Transfer-Encoding: 7bit'], true) + entity(body, depth + 1);
  }
  if (encoding === '7bit' || encoding === '8bit' || encoding === 'binary') {
    return withFields(head, sep, eol, [...top, 'Content-Transfer-Encoding: quoted-printable'], true) + quoted(body, type.startsWith('text/'));
  }
  // Mislabelled: quoted-printable with raw 8-bit bytes; escaping just those is the repair.
  if (encoding === 'quoted-printable') return withFields(head, sep, eol, top) + body.replace(/[\x80-\xff]/g, (c) => hex(c.charCodeAt(0)));
  return refuse(`raw 8-bit bytes in a ${encoding} part`);
}

/** The parts between the boundary's delimiter lines converted; the preamble and epilogue must be 7-bit already. */
function multipart(body: string, boundary: string, depth: number): string {
  const escaped = boundary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const delimiter = new RegExp(`(?:^|\\r?\\n)--${escaped}(--)?[ \\t]*(?=\\r?\\n|$)`, 'g');
  let out = '';
  let last = 0;
  let inPart = false;
  let closed = false;
  for (const m of body.matchAll(delimiter)) {
    const chunk = body.slice(last, m.index);
    out += inPart ? entity(chunk, depth + 1) : sevenBitAlready(chunk);
    const lineEnd = m.index + m[0].length;
    const nl = /^\r?\n/.exec(body.slice(lineEnd, lineEnd + 2))?.[0] ?? '';
    out += body.slice(m.index, lineEnd + nl.length);
    last = lineEnd + nl.length;
    inPart = true;
    if (m[1] === '--') {
      closed = true;
      break;
    }
  }
  const rest = body.slice(last);
  return out + (inPart && !closed ? entity(rest, depth + 1) : sevenBitAlready(rest));
}

function sevenBitAlready(text: string): string {
  if (EIGHT_BIT.test(text)) refuse('raw 8-bit bytes outside any MIME part');
  return text;
}

/**
 * Quoted-printable, lines of at most 76. Text keeps its line breaks (CRLF,
 * RFC 2045 6.7 rule 4); any other type has CR and LF encoded, so the bytes
 * decode exactly as they were.
 */
function quoted(body: string, text: boolean): string {
  const bytes = Buffer.from(text ? body.replace(/\r?\n/g, '\r\n') : body, 'latin1');
  let qp = encode(bytes);
  if (!text) qp = qp.replace(/\r/g, '=0D').replace(/\n/g, '=0A');
  return qp.split('\r\n').map((line) => wrap(line, 76)).join('\r\n');
}

function hex(byte: number): string {
  return `=${byte.toString(16).toUpperCase().padStart(2, '0')}`;
}

/** A header field's unfolded value, undefined when absent. */
function field(head: string, name: string): string | undefined {
  const unfolded = head.replace(/\r?\n(?=[ \t])/g, '');
  const m = new RegExp(`^${name}[ \\t]*:(.*)$`, 'im').exec(unfolded);
  return m ? m[1].trim() : undefined;
}

/** The header with `lines` added; with `replace`, a Content-Transfer-Encoding already there (folded or not) is dropped first. */
function withFields(head: string, sep: string, eol: string, lines: string[], replace = false): string {
  let h = replace ? head.replace(/^content-transfer-encoding[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*(?:\r?\n|$)/gim, '') : head;
  if (lines.length === 0) return head + sep;
  h = h.replace(/\r?\n$/, '');
  const added = lines.join(eol);
  // An entity with no header at all starts with its blank line: the new fields come before it.
  if (h.length === 0) return added + eol + (sep.length > 0 ? sep : eol);
  return h + eol + added + (sep.length > 0 ? sep : eol);
}
