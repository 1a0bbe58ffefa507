// What the spool stores about a message. The envelope travels with the body
// in one record; later State records change only the delivery fields.

export interface Envelope {
  id: string;
  from: string;
  /** Recipients still to deliver (a relocated copy lists only the pending ones). */
  to: string[];
  /** Time the message was accepted (ms since the epoch). */
  received: number;
  /**
   * When it expires (ms). Set only on a message drained from another node:
   * its source's received + max_lifetime, so a drain never resets the expiry.
   * Absent, received + this node's delivery.max_lifetime (older records too).
   */
  expires?: number;
  /** How it came in: smtp or http (or drain, from another node). */
  via: 'smtp' | 'http' | 'drain';
  client?: { ip?: string; helo?: string; user?: string };
  pool?: string;
  vmta?: string;
  /** Injection metadata that every later event carries (tenant, campaign, free keys). */
  meta?: Record<string, string>;
  /** Next delivery attempt (ms since the epoch); absent means now. */
  next?: number;
  attempts?: number;
  size: number;
}

/** A State record: the delivery fields that changed for one message. */
export interface StateChange {
  id: string;
  next?: number;
  attempts?: number;
  /** Recipients that reached a final result and leave the message. */
  finished?: string[];
}

export interface DoneRecord {
  id: string;
  /** withdrawn: written, then not acknowledged because a sync mirror could not confirm it (intake.ts). */
  reason: 'delivered' | 'failed' | 'expired' | 'purged' | 'drained' | 'withdrawn';
}

/** What an entry knows of its partition; the class itself lives in partition.ts. */
export interface SpoolPartitionRef {
  readonly dir: string;
}

/** A place in a partition's ordered change stream. */
export interface Position {
  segment: number;
  offset: number;
}

export function comparePositions(a: Position, b: Position): number {
  return a.segment - b.segment || a.offset - b.offset;
}

/** The in-memory index entry of a queued message; the body stays on disk. */
export interface SpoolEntry {
  id: string;
  /** The partition that holds it (so a scheduler needs no wrapper object per message). */
  owner: SpoolPartitionRef;
  segment: number;
  offset: number;
  length: number;
  from: string;
  to: string[];
  received: number;
  /** Explicit expiry (drained messages); see Envelope.expires and expiresAt. */
  expires?: number;
  next: number;
  attempts: number;
  size: number;
  pool?: string;
  vmta?: string;
}

/** When a queued message expires: its own expiry if it carries one (drained), else received + max_lifetime. */
export function expiresAt(entry: { received: number; expires?: number }, maxLifetimeMs: number): number {
  return entry.expires ?? entry.received + maxLifetimeMs;
}
