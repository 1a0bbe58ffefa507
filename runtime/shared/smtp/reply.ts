// Parsing of an SMTP reply into what the attempt log and the bounce
// classifier need: basic code, enhanced code (RFC 3463) and text.
export interface SmtpReply {
  code: number;
  enhanced?: string;
  text: string;
  /** The text of each line of a multi-line reply (EHLO keywords), when kept. */
  lines?: string[];
}

export function parseReply(response: string | undefined, fallbackCode = 0): SmtpReply {
  // A bare CR inside a line (a broken or hostile server) is no text either: a
  // space, like a line break, so the codes still parse and the text can go
  // into a DSN we send (RFC 5321 2.3.8: no bare CR on the wire).
  const line = (response ?? '').replace(/\r\n|[\r\n]/g, ' ').trim();
  const m = /^(\d{3})[ -]?(?:([245]\.\d{1,3}\.\d{1,3})\s+)?(.*)$/.exec(line);
  if (!m) return { code: fallbackCode, text: line };
  return { code: Number(m[1]), enhanced: m[2], text: m[3] };
}

export type Outcome = 'delivered' | 'deferred' | 'failed';

export function outcomeOf(code: number): Outcome {
  if (code >= 200 && code < 300) return 'delivered';
  if (code >= 500 && code < 600) return 'failed';
  return 'deferred';
}
