// The messages between the lb's primary and its workers (node:cluster IPC).
// Health is the primary's: workers report what real traffic saw and are told
// when a backend goes up or down; the primary asks workers for their status
// and metrics to answer the admin port for the whole node, and counts every
// worker's sessions per client address (client-book.ts).
import type { BackendFailure } from './backend-connect';
import type { LbOptions } from './options';

export type ToLbWorker =
  /** A backend's state, or (after a worker says ready, and after a reload) all of them. */
  | { type: 'lb-up'; states: { listener: string; backend: string; up: boolean }[] }
  /** A reload the primary validated: every worker applies the same options. */
  | { type: 'lb-options'; options: LbOptions }
  | { type: 'lb-query'; id: number; what: 'status' | 'metrics' }
  /** Stop gracefully (drain), or (now: true, a second signal) close every session at once. */
  | { type: 'lb-stop'; now: boolean }
  /** Clients that reached --max-connections-per-client over the node (admit none of theirs), or fell below it again (client-book.ts). */
  | { type: 'lb-client-limits'; changes: { address: string; atLimit: boolean; open: number }[] };

export type FromLbWorker =
  | { type: 'lb-ready' }
  | { type: 'lb-failure'; listener: string; backend: string; reason: BackendFailure; detail: string }
  | { type: 'lb-refusal'; listener: string; backend: string; detail: string }
  | { type: 'lb-success'; listener: string; backend: string }
  | { type: 'lb-reply'; id: number; data: unknown }
  /** This worker's open sessions now for the clients whose count changed since its last report (batched, client-book.ts). */
  | { type: 'lb-client-counts'; counts: [string, number][] };

export function isFromLbWorker(m: unknown): m is FromLbWorker {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string' && (m as { type: string }).type.startsWith('lb-');
}

export function isToLbWorker(m: unknown): m is ToLbWorker {
  return isFromLbWorker(m);
}

/** The environment variable a worker reads its options from (the primary's current ones, so a restarted worker has the last reload). */
export const LB_OPTIONS_ENV = 'VOLLEY_LB_OPTIONS';
