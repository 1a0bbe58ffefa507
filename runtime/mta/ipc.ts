import type { VolleyConfig } from '../shared/config/types';
import type { ThrottleOp } from './delivery/throttle/throttle-authority';
import type { StoreOutcome } from './drain/endpoint';
import type { DrainStoreRecord } from './drain/store';

// The narrow protocol between the MTA's primary process and its workers
// (Node's cluster IPC channel, 'advanced' serialization: drained bodies
// cross it as Buffers). Workers never trust each other; the
// primary only relays config and asks questions.

export interface WorkerStats {
  worker: number;
  queued: number;
  spoolBytes: number;
  spoolSegments: number;
  writeError?: string;
}

export type ToWorker =
  /** The validated config: the answer to config-request, and every refresh. */
  | { type: 'config'; config: VolleyConfig }
  | { type: 'query'; id: number; query: string; args?: Record<string, string | undefined> }
  | { type: 'shutdown' }
  | { type: 'throttle-reply'; id: number; value: unknown }
  /** Another worker ran short on `key`: give back the unspent permits leased for it. */
  | { type: 'throttle-recall'; key: string }
  /** Drained messages this worker owns (hash of the id): make them durable and schedule them. */
  | { type: 'drain-store'; id: number; records: DrainStoreRecord[] }
  | { type: 'drain-held-ack' };

export type FromWorker =
  /** A starting worker asks for the config the primary runs: it never reads the file itself. */
  | { type: 'config-request'; worker: number }
  /** The worker got SIGTERM and is stopping gracefully: the primary restarts it once gone, unless the node itself is stopping. */
  | { type: 'stopping'; worker: number; signal: string }
  | { type: 'ready'; worker: number }
  | { type: 'stats'; stats: WorkerStats }
  | { type: 'reply'; id: number; ok: boolean; data?: unknown; error?: string }
  | { type: 'config-applied'; worker: number }
  | { type: 'throttle'; id: number; q: ThrottleOp }
  | { type: 'drain-stored'; id: number; outcomes: StoreOutcome[] }
  /** A starting worker's queued drained messages: the primary records them as seen before the worker delivers any. */
  | { type: 'drain-held'; worker: number; ids: string[] };

export function isFromWorker(m: unknown): m is FromWorker {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}
