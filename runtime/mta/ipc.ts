import type { VolleyConfig } from '../shared/config/types';
import type { ThrottleOp } from './delivery/throttle-authority';
import type { Submission } from './intake/intake';

// The narrow protocol between the MTA's primary process and its workers
// (Node's cluster IPC channel, JSON). Workers never trust each other; the
// primary only relays config and asks questions.

export interface WorkerStats {
  worker: number;
  queued: number;
  spoolBytes: number;
  spoolSegments: number;
  writeError?: string;
}

export type ToWorker =
  | { type: 'config'; config: VolleyConfig }
  | { type: 'query'; id: number; query: string; args?: Record<string, string | undefined> }
  | { type: 'shutdown' }
  | { type: 'throttle-reply'; id: number; value: unknown };

export type FromWorker =
  | { type: 'ready'; worker: number }
  | { type: 'stats'; stats: WorkerStats }
  | { type: 'reply'; id: number; ok: boolean; data?: unknown; error?: string }
  | { type: 'config-applied'; worker: number }
  | { type: 'throttle'; id: number; q: ThrottleOp };

export function isFromWorker(m: unknown): m is FromWorker {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}

// Between a worker's main thread (the listeners) and its queue thread (the
// spool and delivery), over a worker_threads MessagePort. The queue thread
// speaks the worker's side of the protocol above; the main thread relays it
// to and from the primary, and adds intake and metrics requests of its own.

/** A Submission as it crosses the port: the message body arrives as a Uint8Array. */
export type WireSubmission = Omit<Submission, 'message'> & { message: Uint8Array };

export interface WireRefusal {
  reason: string;
  smtpCode: number;
  enhanced: string;
  httpStatus: number;
  message: string;
}

/** The queue thread's answer to one submission: durable (with its id), refused, or failed. */
export type SubmitAnswer = { seq: number; id: string } | { seq: number; refusal: WireRefusal } | { seq: number; error: string };

// Submissions and their answers travel in batches (all of one event-loop turn):
// a message across the port wakes the other thread, and one wake-up per turn
// costs less than one per message.
export type ToQueue =
  | ToWorker
  | { type: 'submit'; batch: { seq: number; sub: WireSubmission }[] }
  | { type: 'metrics'; seq: number };

export type FromQueue =
  | FromWorker
  | { type: 'answers'; batch: SubmitAnswer[] }
  | { type: 'metrics'; seq: number; data: unknown[] }
  | { type: 'stopped' };
