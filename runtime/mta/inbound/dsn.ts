// RFC 3464 delivery status notifications: the per-message fields and one
// group per recipient from a message/delivery-status part (also RFC 6533's
// message/global-delivery-status, whose fields are the same in UTF-8).

import { bareAddress, fieldGroups, typedValue, type FieldGroup } from './fields';

export interface DsnRecipient {
  finalRecipient?: string;
  originalRecipient?: string;
  /** failed, delayed, delivered, relayed, expanded (lower case). */
  action: string;
  /** The Status field's code, e.g. 5.1.1. */
  status?: string;
  /** Diagnostic-Code, unfolded, without its type (`smtp; `). */
  diagnostic?: string;
  remoteMta?: string;
}

export interface DeliveryStatus {
  reportingMta?: string;
  arrivalDate?: string;
  recipients: DsnRecipient[];
  /** Recipient groups past the cap (inbound.max_report_recipients): counted, not read. */
  omitted: number;
}

const STATUS = /\b([245]\.\d{1,3}\.\d{1,3})\b/;

/**
 * Undefined when the text holds no per-recipient group with an Action: not a
 * DSN we can read. Only the first maxRecipients groups are read; the rest are
 * counted in `omitted` (one report could otherwise name 180,000 recipients
 * and become as many events).
 */
export function parseDeliveryStatus(text: string, maxRecipients = Infinity): DeliveryStatus | undefined {
  let first: FieldGroup | undefined;
  let seen = false;
  let omitted = 0;
  const recipients: DsnRecipient[] = [];
  for (const g of fieldGroups(text)) {
    const action = g.get('action')?.trim().toLowerCase().split(/[\s(]/)[0];
    // The per-message group comes first; Exim and others sometimes put no
    // field in it that a recipient group would have, so tell them apart by Action.
    if (!seen) {
      seen = true;
      if (g.get('action') === undefined) {
        first = g;
        continue;
      }
    }
    if (!action) continue;
    if (recipients.length >= maxRecipients) {
      omitted++;
      continue;
    }
    recipients.push({
      finalRecipient: bareAddress(typedValue(g.get('final-recipient'))),
      originalRecipient: bareAddress(typedValue(g.get('original-recipient'))),
      action,
      status: STATUS.exec(g.get('status') ?? '')?.[1],
      diagnostic: typedValue(g.get('diagnostic-code')),
      remoteMta: typedValue(g.get('remote-mta')),
    });
  }
  if (recipients.length === 0) return undefined;
  return { reportingMta: typedValue(first?.get('reporting-mta')), arrivalDate: first?.get('arrival-date'), recipients, omitted };
}

/**
 * An SMTP reply quoted in a Diagnostic-Code: its code, enhanced code and text,
 * with the code prefixes of a multi-line reply (`550-5.1.1 ...`) removed.
 */
export function diagnosticReply(diagnostic: string | undefined): { code?: number; enhanced?: string; text: string } {
  const text = (diagnostic ?? '').replace(/\s+/g, ' ').trim();
  const m = /^(\d{3})[ -](?:([245]\.\d{1,3}\.\d{1,3}) +)?/.exec(text);
  if (!m) return { text };
  const prefix = new RegExp(`(^| )${m[1]}[ -](?:${(m[2] ?? '').replace(/\./g, '\\.')} +)?`, 'g');
  return { code: Number(m[1]), enhanced: m[2], text: text.replace(prefix, ' ').replace(/\s+/g, ' ').trim() };
}
