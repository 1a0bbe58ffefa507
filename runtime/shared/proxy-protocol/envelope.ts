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
