// Reads an inbound message as a report: mailparser splits the MIME and
// undoes transfer encodings; the report parts (RFC 3464, RFC 5965) and the
// embedded original headers are read by dsn.ts, arf.ts and fields.ts.

import { simpleParser, type SimpleParserOptions } from 'mailparser';
import { parseFeedbackReport, type FeedbackReport } from './arf';
import { parseDeliveryStatus, type DeliveryStatus } from './dsn';
import { FieldGroup, bareAddress, parseHeaderBlock } from './fields';

interface Common {
  /** The header fields of the original message quoted in the report (message/rfc822 or text/rfc822-headers). */
  original?: FieldGroup;
  /** The report's own From address. */
  from?: string;
}

export type ParsedReport =
  | (Common & { kind: 'dsn'; dsn: DeliveryStatus })
  | (Common & { kind: 'arf'; arf: FeedbackReport })
  | (Common & { kind: 'other'; reason: 'not-a-report' | 'unparseable'; detail: string });

const DELIVERY_STATUS = new Set(['message/delivery-status', 'message/global-delivery-status']);
const ORIGINAL = new Set(['message/rfc822', 'message/global', 'text/rfc822-headers', 'message/global-headers']);
// Reports are small and read for their fields, never shown: no HTML
// rendering. keepDeliveryStatus keeps the DSN part apart (by default it is
// merged into the text), ignoreEmbedded keeps an inline message/rfc822 as a
// part of its own instead of expanding it into the text, so its headers can
// be read. Neither is in @types/mailparser, both are in mailparser 3.
const OPTIONS = { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true, keepDeliveryStatus: true, ignoreEmbedded: true } as SimpleParserOptions;

export interface ReportLimits {
  /** Recipient groups of a DSN, Original-Rcpt-To fields of an ARF report, read at most (inbound.max_report_recipients). */
  maxRecipients?: number;
}

// What one report costs, measured in a process of its own on a 10 MB DSN of
// 180,000 recipient groups (the RSS peak over the raw bytes already read):
// mailparser's simpleParser alone ~+28 MB, ~0.7 s: besides the raw bytes it
// holds the report about three times over again at its peak (not broken down
// further: its decoded part content is one copy). That is the library's and
// is left as it is; our own reading no longer adds much to it:
// reading every group at once (lines split into one array, a Map per group)
// took the whole parse to ~+272 MB and ~2.9 s; read one group at a time
// ~+106 MB, and with the cap of 1,000 recipients ~+40 MB, ~0.9 s. The
// listener parses one report at a time (inbound-listener.ts) so this is paid
// once, not once per open connection.
export async function parseReport(raw: Buffer, limits: ReportLimits = {}): Promise<ParsedReport> {
  let parsed;
  try {
    parsed = await simpleParser(raw, OPTIONS);
  } catch (err) {
    return { kind: 'other', reason: 'unparseable', detail: `MIME: ${(err as Error).message}` };
  }
  const parts = parsed.attachments;
  const originalPart = parts.find((p) => ORIGINAL.has(p.contentType.toLowerCase()));
  const common: Common = {
    original: originalPart && parseHeaderBlock(originalPart.content.toString('utf8')),
    from: bareAddress(parsed.from?.value[0]?.address),
  };
  const statusPart = parts.find((p) => DELIVERY_STATUS.has(p.contentType.toLowerCase()));
  const feedbackPart = parts.find((p) => p.contentType.toLowerCase() === 'message/feedback-report');
  if (statusPart) {
    const dsn = parseDeliveryStatus(statusPart.content.toString('utf8'), limits.maxRecipients);
    if (!dsn) return { ...common, kind: 'other', reason: 'unparseable', detail: 'the delivery-status part has no recipient with an Action' };
    return { ...common, kind: 'dsn', dsn };
  }
  if (feedbackPart) {
    const arf = parseFeedbackReport(feedbackPart.content.toString('utf8'), limits.maxRecipients);
    if (!arf) return { ...common, kind: 'other', reason: 'unparseable', detail: 'the feedback-report part has no Feedback-Type' };
    return { ...common, kind: 'arf', arf };
  }
  const type = parsed.headers.get('content-type') as { value?: string; params?: Record<string, string> } | undefined;
  const reportType = type?.value === 'multipart/report' ? type.params?.['report-type'] : undefined;
  return { ...common, kind: 'other', reason: reportType ? 'unparseable' : 'not-a-report', detail: reportType ? `a ${reportType} report without its report part` : `a ${type?.value ?? 'text/plain'} message, not a DSN or an ARF report` };
}
