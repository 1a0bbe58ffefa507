import { randomBytes } from 'node:crypto';
import type { SmtpReply } from '../../../shared/smtp/reply';

export interface DsnFailure {
  rcpt: string;
  reply: SmtpReply;
  /** expired: gave up after the queue lifetime (Action: failed, status 4.4.7 unless the last reply was permanent). */
  expired: boolean;
}

/**
 * An RFC 3464 delivery status notification for the recipients that failed:
 * a human part, the machine-readable message/delivery-status part, and the
 * original headers (RFC 6522 multipart/report), from the null sender so it
 * can never bounce back.
 */
export function buildDsn(opts: { reportingMta: string; originalFrom: string; messageId: string; originalMessage: Buffer; failures: DsnFailure[]; arrival: Date; now?: Date }): Buffer {
  const boundary = `volley-dsn-${randomBytes(8).toString('hex')}`;
  const end = opts.originalMessage.indexOf('\r\n\r\n');
  const headers = opts.originalMessage.subarray(0, end === -1 ? opts.originalMessage.length : end + 2).toString('latin1');
  const date = (opts.now ?? new Date()).toUTCString().replace('GMT', '+0000');
  const human = opts.failures
    .map((f) => `  <${f.rcpt}>: ${f.expired ? 'could not be delivered before the message expired; the last attempt said: ' : ''}${f.reply.code} ${f.reply.enhanced ?? ''} ${oneLine(f.reply.text)}`.replace(/\s+$/, ''))
    .join('\r\n');
  const perRecipient = opts.failures
    .map((f) => {
      const status = f.expired && f.reply.code < 500 ? '4.4.7' : (f.reply.enhanced ?? (f.reply.code >= 500 ? '5.0.0' : '4.0.0'));
      return [`Final-Recipient: rfc822; ${f.rcpt}`, 'Action: failed', `Status: ${status}`, `Diagnostic-Code: smtp; ${f.reply.code} ${f.reply.enhanced ?? ''} ${oneLine(f.reply.text)}`.replace(/\s+$/, '')].join('\r\n');
    })
    .join('\r\n\r\n');
  const text = [
    `From: Mail Delivery System <MAILER-DAEMON@${opts.reportingMta}>`,
    `To: <${opts.originalFrom}>`,
    'Subject: Undelivered Mail Returned to Sender',
    `Date: ${date}`,
    `Message-ID: <${opts.messageId}.dsn@${opts.reportingMta}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    `Your message (queue id ${opts.messageId}) could not be delivered to:`,
    '',
    human,
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    `Reporting-MTA: dns; ${opts.reportingMta}`,
    `X-Volley-Queue-ID: ${opts.messageId}`,
    `Arrival-Date: ${opts.arrival.toUTCString().replace('GMT', '+0000')}`,
    '',
    perRecipient,
    '',
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    '',
    headers.replace(/\r\n$/, ''),
    '',
    `--${boundary}--`,
    '',
  ].join('\r\n');
  return Buffer.from(text, 'latin1');
}

/**
 * A remote server's reply text as one line of the DSN: it is the server's to
 * choose (or an older attempt log's), and a CR or LF in it would be a bare
 * one in a message we send (RFC 5321 2.3.8) or a line of its own in the
 * delivery-status fields.
 */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}
