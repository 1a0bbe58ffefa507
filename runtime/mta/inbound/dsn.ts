// RFC 3464 delivery status notifications: the per-message fields and one
// group per recipient from a message/delivery-status part (also RFC 6533's
// message/global-delivery-status, whose fields are the same in UTF-8).

import { bareAddress, parseFieldGroups, typedValue } from './fields';

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
}

const STATUS = /\b([245]\.\d{1,3}\.\d{1,3})\b/;

/** Undefined when the text holds no per-recipient group with an Action: not a DSN we can read. */
export function parseDeliveryStatus(text: string): DeliveryStatus | undefined {
  const groups = parseFieldGroups(text);
  if (groups.length === 0) return undefined;
  // The per-message group comes first; Exim and others sometimes put no
  // field in it that a recipient group would have, so tell them apart by Action.
  const first = groups[0].get('action') === undefined ? groups[0] : undefined;
  const recipients: DsnRecipient[] = [];
  for (const g of first ? groups.slice(1) : groups) {
    const action = g.get('action')?.trim().toLowerCase().split(/[\s(]/)[0];
    if (!action) continue;
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
  return { reportingMta: typedValue(first?.get('reporting-mta')), arrivalDate: first?.get('arrival-date'), recipients };
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
