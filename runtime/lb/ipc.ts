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
  /** The answer to lb-client-open: whether the session may be served (the node's count for its client is under the limit). */
  | { type: 'lb-client-grant'; id: number; ok: boolean };

export type FromLbWorker =
  | { type: 'lb-ready' }
  | { type: 'lb-failure'; listener: string; backend: string; reason: BackendFailure; detail: string }
  | { type: 'lb-refusal'; listener: string; backend: string; detail: string }
  | { type: 'lb-success'; listener: string; backend: string }
  | { type: 'lb-reply'; id: number; data: unknown }
  /** A session from `address` was accepted: may it be served (--max-connections-per-client, counted for the node by the primary)? */
  | { type: 'lb-client-open'; id: number; address: string }
  /** A session lb-client-open granted has ended. */
  | { type: 'lb-client-close'; address: string };

export function isFromLbWorker(m: unknown): m is FromLbWorker {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string' && (m as { type: string }).type.startsWith('lb-');
}

export function isToLbWorker(m: unknown): m is ToLbWorker {
  return isFromLbWorker(m);
}

/** The environment variable a worker reads its options from (the primary's current ones, so a restarted worker has the last reload). */
export const LB_OPTIONS_ENV = 'VOLLEY_LB_OPTIONS';
