/** An SMTP reply: basic code, RFC 3463 enhanced code, and text (several lines for EHLO). */
export interface Reply {
  code: number;
  enhanced?: string;
  text: string | string[];
}

export function reply(code: number, enhanced: string | undefined, text: string | string[]): Reply {
  return { code, enhanced, text };
}

export function formatReply(r: Reply): string {
  const lines = Array.isArray(r.text) ? r.text : [r.text];
  // A reply line never carries a CR or LF of its own: texts may quote client input.
  const prefix = r.enhanced ? `${r.enhanced} ` : '';
  return lines.map((line, i) => `${r.code}${i < lines.length - 1 ? '-' : ' '}${prefix}${line.replace(/[\r\n\0]/g, ' ')}\r\n`).join('');
}
