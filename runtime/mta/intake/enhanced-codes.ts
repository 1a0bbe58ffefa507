import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

// smtp-server picks the enhanced status code from the basic code alone (554 is
// always 5.6.0), but a relay refusal must say 5.7.1 and a full disk 4.3.1.
// Replies whose text already starts with an enhanced code are sent as they
// are; everything else keeps the library's choice.
const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;
type Send = (code: number, data?: string | string[], context?: string | false) => void;
const proto = SMTPConnection.prototype as unknown as { send: Send; __volleyEnhanced?: boolean };

export function installEnhancedCodes(): void {
  if (proto.__volleyEnhanced) return;
  const original = proto.send;
  proto.send = function (this: unknown, code, data, context) {
    original.call(this, code, data, typeof data === 'string' && ENHANCED.test(data) ? false : context);
  };
  proto.__volleyEnhanced = true;
}

/** An error smtp-server turns into a reply: `code enhanced text`. */
export function smtpError(code: number, enhanced: string, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(`${enhanced} ${text}`), { responseCode: code });
}
