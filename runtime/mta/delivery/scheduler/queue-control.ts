import type { SpoolEntry } from '../../spool/types';

/** Which queued messages an operator's command is about. Empty matches everything. */
export interface Selector {
  domain?: string;
  vmta?: string;
  id?: string;
}

export function domainsOf(entry: SpoolEntry): string[] {
  return [...new Set(entry.to.map((r) => r.slice(r.lastIndexOf('@') + 1).toLowerCase()))];
}

export function matches(entry: SpoolEntry, sel: Selector): boolean {
  if (sel.id !== undefined && entry.id !== sel.id) return false;
  if (sel.vmta !== undefined && entry.vmta !== sel.vmta) return false;
  if (sel.domain !== undefined && !domainsOf(entry).includes(sel.domain.toLowerCase())) return false;
  return true;
}

export interface QueueSummary {
  messages: number;
  byDomain: Record<string, { queued: number; due: number; deferred: number }>;
  byVmta: Record<string, number>;
}

/** Counts per domain, VMTA and state ("due": may go now; "deferred": waiting for its retry time). */
export function summarise(entries: Iterable<SpoolEntry>, now: number): QueueSummary {
  const s: QueueSummary = { messages: 0, byDomain: {}, byVmta: {} };
  for (const e of entries) {
    s.messages++;
    const vm = e.vmta ?? e.pool ?? '(default)';
    s.byVmta[vm] = (s.byVmta[vm] ?? 0) + 1;
    for (const d of domainsOf(e)) {
      const c = (s.byDomain[d] ??= { queued: 0, due: 0, deferred: 0 });
      c.queued++;
      if (e.next <= now) c.due++;
      else c.deferred++;
    }
  }
  return s;
}
