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

export async function parseReport(raw: Buffer): Promise<ParsedReport> {
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
    const dsn = parseDeliveryStatus(statusPart.content.toString('utf8'));
    if (!dsn) return { ...common, kind: 'other', reason: 'unparseable', detail: 'the delivery-status part has no recipient with an Action' };
    return { ...common, kind: 'dsn', dsn };
  }
  if (feedbackPart) {
    const arf = parseFeedbackReport(feedbackPart.content.toString('utf8'));
    if (!arf) return { ...common, kind: 'other', reason: 'unparseable', detail: 'the feedback-report part has no Feedback-Type' };
    return { ...common, kind: 'arf', arf };
  }
  const type = parsed.headers.get('content-type') as { value?: string; params?: Record<string, string> } | undefined;
  const reportType = type?.value === 'multipart/report' ? type.params?.['report-type'] : undefined;
  return { ...common, kind: 'other', reason: reportType ? 'unparseable' : 'not-a-report', detail: reportType ? `a ${reportType} report without its report part` : `a ${type?.value ?? 'text/plain'} message, not a DSN or an ARF report` };
}
