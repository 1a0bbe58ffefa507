// Ties a parsed report to the message and recipient it is about, and turns
// it into events. The order, most trusted first:
//   1. a VERP token (the inbound RCPT TO, an ARF Original-Mail-From, or the
//      Return-Path quoted in the report): HMAC-checked, it names message and
//      recipient. A token that fails its check is a forgery: the report is
//      not believed at all (unmatched), even if it also quotes headers.
//   2. the X-Volley-Id header quoted in the report names the message; the
//      recipient comes from the report itself: a DSN's Original-Recipient
//      (what we sent in RCPT TO) or else its Final-Recipient, per group; an
//      ARF's Original-Rcpt-To, or Microsoft's X-HmXmrOriginalRecipient in
//      the quoted headers.
//   3. a recipient alone never names a message: the same address is in many
//      messages, and the Final-Recipient may be an alias we never sent to.
//      "By Original-/Final-Recipient" therefore only picks the recipient
//      within a message step 1 or 2 named; without one the report is unmatched.
// The quoted To: header is not used for a recipient: it is display text (a
// list, a Bcc, or AOL's "redacted").

import type { BounceCategory } from '../delivery/records/bounce-category';
import type { Verp } from '../delivery/records/verp';
import type { MatchedBy, NewEvent } from '../events/types';
import type { SmtpReply } from '../../shared/smtp/reply';
import { diagnosticReply, type DsnRecipient } from './dsn';
import { bareAddress } from './fields';
import type { ParsedReport } from './report';

export type UnmatchedReason = 'not-a-report' | 'unparseable' | 'forged-token' | 'no-message' | 'no-recipient' | 'unhandled-feedback-type' | 'parse-timeout';

/** omitted: recipients the report names past inbound.max_report_recipients, which made no event. */
export type MatchResult = { ok: true; matchedBy: MatchedBy; messageId: string; events: NewEvent[]; omitted: number } | { ok: false; reason: UnmatchedReason; detail: string };

export interface MatchContext {
  /** The inbound session's RCPT TO addresses: a DSN goes to the return path, so a VERP one is here. */
  envelopeRecipients: readonly string[];
  verp?: Verp;
  nodeId: string;
  now: () => number;
  classify: (reply: SmtpReply) => BounceCategory;
}

const VOLLEY_ID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const COMPLAINT_TYPES = new Set(['abuse', 'fraud', 'virus', 'other']);
const REPORTED_ACTIONS = new Set(['failed', 'delayed']);

export function matchReport(report: ParsedReport, ctx: MatchContext): MatchResult {
  if (report.kind === 'other') return { ok: false, reason: report.reason, detail: report.detail };
  if (report.kind === 'arf' && !COMPLAINT_TYPES.has(report.arf.feedbackType) && report.arf.feedbackType !== 'unsubscribe') {
    return { ok: false, reason: 'unhandled-feedback-type', detail: `Feedback-Type: ${report.arf.feedbackType} is neither a complaint nor an unsubscribe` };
  }
  const verp = byVerp(report, ctx);
  if (verp && !verp.ok) return { ok: false, reason: 'forged-token', detail: `VERP address ${verp.address} fails its check (${verp.reason}): not believed` };
  const omitted = report.kind === 'dsn' ? report.dsn.omitted : report.arf.omitted;
  if (verp) return { ok: true, matchedBy: 'verp', messageId: verp.messageId, events: eventsFor(report, verp.messageId, 'verp', ctx, verp.recipient), omitted };

  const header = report.original?.get('x-volley-id')?.trim().toUpperCase();
  const messageId = header && VOLLEY_ID.test(header) ? header : undefined;
  if (!messageId) return { ok: false, reason: 'no-message', detail: 'no VERP return path and no X-Volley-Id in the quoted headers: a recipient alone names no message' };
  const events = eventsFor(report, messageId, 'header', ctx);
  if (events === undefined) return { ok: false, reason: 'no-recipient', detail: `message ${messageId}: the report names no recipient` };
  return { ok: true, matchedBy: 'header', messageId, events, omitted };
}

type VerpMatch = { ok: true; messageId: string; recipient: string } | { ok: false; address: string; reason: string };

/** The first authentic token among the candidates; a forged one only when there is no authentic one. */
function byVerp(report: Exclude<ParsedReport, { kind: 'other' }>, ctx: MatchContext): VerpMatch | undefined {
  if (!ctx.verp) return undefined;
  const candidates = [
    ...ctx.envelopeRecipients,
    ...(report.kind === 'arf' && report.arf.originalMailFrom ? [report.arf.originalMailFrom] : []),
    ...(report.original?.all('return-path') ?? []).map(bareAddress).filter((a): a is string => a !== undefined),
  ];
  let forged: VerpMatch | undefined;
  for (const address of candidates) {
    const r = ctx.verp.read(address);
    if (r?.ok) return r;
    if (r && !forged) forged = { ok: false, address, reason: r.reason };
  }
  return forged;
}

function eventsFor(report: Exclude<ParsedReport, { kind: 'other' }>, messageId: string, matchedBy: MatchedBy, ctx: MatchContext, verpRecipient: string): NewEvent[];
function eventsFor(report: Exclude<ParsedReport, { kind: 'other' }>, messageId: string, matchedBy: MatchedBy, ctx: MatchContext): NewEvent[] | undefined;
function eventsFor(report: Exclude<ParsedReport, { kind: 'other' }>, messageId: string, matchedBy: MatchedBy, ctx: MatchContext, verpRecipient?: string): NewEvent[] | undefined {
  const base = { time: new Date(ctx.now()).toISOString(), node: ctx.nodeId, message_id: messageId, matched_by: matchedBy };
  const withRecipient = (recipient: string) => ({ ...base, recipient, domain: recipient.slice(recipient.lastIndexOf('@') + 1).toLowerCase() });

  if (report.kind === 'dsn') {
    // delivered / relayed / expanded say nothing went wrong: no event.
    const groups = report.dsn.recipients.filter((r) => REPORTED_ACTIONS.has(r.action));
    const bounce = (r: DsnRecipient, recipient: string): NewEvent => {
      const diag = diagnosticReply(r.diagnostic);
      // A generic Status (Exim writes 5.0.0) says less than the reply it quotes.
      const enhanced = r.status && !/\.0\.0$/.test(r.status) ? r.status : (diag.enhanced ?? r.status);
      const code = diag.code ?? (enhanced?.startsWith('5') ? 550 : enhanced?.startsWith('4') ? 450 : 0);
      return {
        ...withRecipient(recipient),
        event: 'bounce',
        status: r.action === 'failed' ? 'failed' : 'delayed',
        enhanced_code: enhanced,
        smtp_code: diag.code,
        smtp_text: diag.text || undefined,
        bounce_category: ctx.classify({ code, enhanced, text: diag.text }),
        reporting_mta: report.dsn.reportingMta,
        remote_mta: r.remoteMta,
      };
    };
    if (verpRecipient !== undefined) {
      // One recipient per VERP'd transaction: the report is about it, however
      // many groups an alias expansion made of it. The most final one speaks.
      const chosen = groups.find((g) => g.action === 'failed') ?? groups[0];
      return chosen ? [bounce(chosen, verpRecipient)] : [];
    }
    const named = groups.map((g) => ({ g, recipient: g.originalRecipient ?? g.finalRecipient }));
    if (named.length > 0 && named.every((n) => n.recipient === undefined)) return undefined;
    return named.filter((n) => n.recipient !== undefined).map((n) => bounce(n.g, n.recipient!));
  }

  const arf = report.arf;
  const recipients = verpRecipient !== undefined ? [verpRecipient] : arfRecipients(report);
  if (recipients.length === 0) return undefined;
  const reportedBy = arf.reportingMta ?? report.from?.slice(report.from.lastIndexOf('@') + 1).toLowerCase();
  return recipients.map((recipient): NewEvent => {
    if (arf.feedbackType === 'unsubscribe') return { ...withRecipient(recipient), event: 'unsubscribe', reported_by: reportedBy };
    return { ...withRecipient(recipient), event: 'complaint', feedback_type: arf.feedbackType, user_agent: arf.userAgent, source_ip: arf.sourceIp, reported_by: reportedBy };
  });
}

/** Original-Rcpt-To, else Microsoft's X-HmXmrOriginalRecipient in the quoted headers (JMRP sends nothing else). */
function arfRecipients(report: Extract<ParsedReport, { kind: 'arf' }>): string[] {
  if (report.arf.originalRcptTo.length > 0) return report.arf.originalRcptTo;
  const ms = bareAddress(report.original?.get('x-hmxmroriginalrecipient'));
  return ms ? [ms] : [];
}
