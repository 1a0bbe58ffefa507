// RFC 5965 abuse reporting format: the machine-readable
// message/feedback-report part of a feedback-loop report. Microsoft's JMRP
// fills in little more than Feedback-Type; the rest is read from the
// embedded original message (report.ts).

import { bareAddress, fieldGroups } from './fields';

export interface FeedbackReport {
  /** abuse, fraud, virus, other, unsubscribe, not-spam, auth-failure ... (lower case). */
  feedbackType: string;
  userAgent?: string;
  version?: string;
  originalMailFrom?: string;
  originalRcptTo: string[];
  /** Original-Rcpt-To fields past the cap (inbound.max_report_recipients): each would be an event; counted, not read. */
  omitted: number;
  sourceIp?: string;
  reportedDomain: string[];
  reportingMta?: string;
  /** Arrival-Date, or Received-Date as early drafts (and Yahoo, AOL) call it. */
  arrivalDate?: string;
}

/**
 * Undefined when there is no Feedback-Type: not a feedback report. One report
 * is one complaint, but Original-Rcpt-To may repeat and each is an event, so
 * only the first maxRecipients are read.
 */
export function parseFeedbackReport(text: string, maxRecipients = Infinity): FeedbackReport | undefined {
  const next = fieldGroups(text).next();
  const g = next.done ? undefined : next.value;
  const type = g?.get('feedback-type')?.trim().toLowerCase();
  if (!g || !type) return undefined;
  const reportingMta = g.get('reporting-mta');
  const rcptTo = g.all('original-rcpt-to').map(bareAddress).filter((a): a is string => a !== undefined);
  return {
    feedbackType: type,
    userAgent: g.get('user-agent'),
    version: g.get('version'),
    originalMailFrom: bareAddress(g.get('original-mail-from')),
    originalRcptTo: rcptTo.slice(0, maxRecipients),
    omitted: Math.max(0, rcptTo.length - maxRecipients),
    sourceIp: g.get('source-ip'),
    reportedDomain: g.all('reported-domain'),
    reportingMta: reportingMta && reportingMta.replace(/^[^;]*;\s*/, ''),
    arrivalDate: g.get('arrival-date') ?? g.get('received-date'),
  };
}
