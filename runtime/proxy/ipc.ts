// The messages between `volley proxy`'s primary and its workers (node:cluster
// IPC, 'advanced' serialization so the TLS pair and secrets cross as bytes).
// The primary reads and checks the config; workers never read the file, so
// every worker runs the config the primary accepted.
import type { ClusterLimits, MessagePermit } from '../shared/throttle/cluster-throttles';
import type { ProxyConfig, ProxyMaterial } from './config';
import type { ProxyStats } from './server';

/** A control-channel decision a worker asks of the node's one ClusterThrottles. */
export type ThrottleOp =
  | { op: 'connection'; mta: string; key: string; limits: ClusterLimits; reclaim: boolean }
  | { op: 'message'; mta: string; key: string; limits: ClusterLimits }
  | { op: 'release'; mta: string; key: string }
  | { op: 'forget'; mta: string };

export type ToProxyWorker =
  /** The answer to config-request, and every accepted reload. */
  | { type: 'config'; generation: number; config: ProxyConfig; material: ProxyMaterial }
  | { type: 'stats-query'; id: number }
  | { type: 'throttle-reply'; id: number; value: boolean | MessagePermit }
  /** Another worker opens an MX session for this pool key: QUIT one idle session kept for it (if any), then say how many. */
  | { type: 'evict'; id: number; key: string }
  /** The other workers have evicted (or did not answer in time): open now. */
  | { type: 'open-ok'; id: number }
  /** The node stops: finish transactions in flight within graceMs, then exit. */
  | { type: 'stop'; graceMs: number };

export type FromProxyWorker =
  | { type: 'config-request'; worker: number }
  | { type: 'listening'; worker: number }
  /** A config (by generation) is running on this worker: ok false when its server refused it. */
  | { type: 'applied'; worker: number; generation: number; ok: boolean }
  | { type: 'stats'; id: number; stats: ProxyStats }
  /** About to open an MX session for this pool key: the primary has another worker QUIT one idle session for it first. */
  | { type: 'opening'; id: number; key: string }
  | { type: 'evicted'; id: number; worker: number; closed: number }
  /** id 0: no answer wanted (release, forget). */
  | { type: 'throttle'; id: number; q: ThrottleOp };

export function isFromProxyWorker(m: unknown): m is FromProxyWorker {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}

export function isToProxyWorker(m: unknown): m is ToProxyWorker {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}

/** A Buffer sent over 'advanced' IPC may arrive as a plain Uint8Array: made a Buffer again (no copy). */
export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
