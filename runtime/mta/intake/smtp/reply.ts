/** An SMTP reply: basic code, RFC 3463 enhanced code, and text (several lines for EHLO). */
export interface Reply {
  code: number;
  enhanced?: string;
  text: string | string[];
}

export function reply(code: number, enhanced: string | undefined, text: string | string[]): Reply {
  return { code, enhanced, text };
}

// A reply line never carries a control character of its own: texts may quote
// client input (a CR or LF would forge a reply; an ESC would reach a terminal).
const BREAKS = /[\x00-\x1f\x7f]/g;
const clean = (line: string): string => (line.search(BREAKS) === -1 ? line : line.replace(BREAKS, ' '));

export function formatReply(r: Reply): string {
  const prefix = r.enhanced ? `${r.enhanced} ` : '';
  // One line is every reply but EHLO's, several a session: no array for it.
  if (!Array.isArray(r.text)) return `${r.code} ${prefix}${clean(r.text)}\r\n`;
  const lines = r.text;
  return lines.map((line, i) => `${r.code}${i < lines.length - 1 ? '-' : ' '}${prefix}${clean(line)}\r\n`).join('');
}
