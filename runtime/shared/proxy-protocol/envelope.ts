// What a "transaction" frame may carry, in one place: the proxy refuses a
// frame that breaks these rules, and the MTA's intake refuses the same
// envelope up front, so no accepted message is undeliverable by construction.
import { DEFAULT_MAX_FRAME } from './codec';

// An SMTP argument must not smuggle a second command (the proxy writes it
// into MAIL FROM:<…> / RCPT TO:<…> as it is): no white space (Unicode's too),
// no angle brackets, no control characters.
export const SAFE_ARG = /^[^\s<>\x00-\x1f\x7f]*$/;

// Room left in a frame for what the delivery adds to the stored message
// (DKIM-Signature fields: a few hundred bytes each) and, for SIZE, a
// typical envelope's header JSON.
const FRAME_MARGIN = 64 * 1024;
/** The largest message a transaction frame carries within the proxy's frame limit. */
export const MAX_TRANSACTION_BODY = DEFAULT_MAX_FRAME - FRAME_MARGIN;

/** Why the proxy would refuse this envelope, or undefined when it would take it. */
export function transactionProblem(from: unknown, to: unknown): string | undefined {
  if (typeof from !== 'string' || !SAFE_ARG.test(from)) return 'sender contains white space, <, > or a control character';
  if (!Array.isArray(to) || to.length === 0) return 'no recipients';
  for (const r of to) if (typeof r !== 'string' || r.length === 0 || !SAFE_ARG.test(r)) return 'a recipient is empty or contains white space, <, > or a control character';
  return undefined;
}

/** True when the whole frame (length field, header JSON, message, and what delivery adds) would pass the proxy's frame limit. */
export function transactionTooLarge(from: string, to: string[], bodyLength: number): boolean {
  const header = Buffer.byteLength(JSON.stringify({ t: 'transaction', from, to }));
  return 4 + header + bodyLength + FRAME_MARGIN > DEFAULT_MAX_FRAME;
}

/**
 * Why a result frame's recipients are not the answer to a transaction sent
 * to `to`, or undefined when they are: one entry per recipient, in the order
 * sent (the proxy answers from the MX's replies in that order), each with a
 * reply, and "delivered" only on a 2xx, "failed" only on a 5xx. Anything else
 * (another transaction's answer, a recipient left out) would have the MTA
 * record as done recipients the MX was never asked about.
 */
export function resultProblem(recipients: unknown, to: readonly string[]): string | undefined {
  if (!Array.isArray(recipients)) return 'recipients is not a list';
  if (recipients.length !== to.length) return `${recipients.length} results for ${to.length} recipients`;
  for (const [i, r] of recipients.entries()) {
    const entry = r as { rcpt?: unknown; reply?: { code?: unknown; text?: unknown } | null; outcome?: unknown } | null;
    if (typeof entry !== 'object' || entry === null || entry.rcpt !== to[i]) return `result ${i + 1} is not for ${to[i]}`;
    if (typeof entry.reply !== 'object' || entry.reply === null || typeof entry.reply.text !== 'string') return `result ${i + 1} has no SMTP reply`;
    // A code the MX got wrong (a line that was no reply) may stand behind a deferral, never behind a final outcome.
    const code = typeof entry.reply.code === 'number' ? entry.reply.code : NaN;
    const backed = entry.outcome === 'deferred' || (entry.outcome === 'delivered' && code >= 200 && code < 300) || (entry.outcome === 'failed' && code >= 500 && code < 600);
    if (!backed) return `result ${i + 1} says ${JSON.stringify(entry.outcome).slice(0, 20)} on a reply ${String(entry.reply.code).slice(0, 10)}`;
  }
  return undefined;
}
