// The control channel's frames (cluster-wide throttles), as codec.ts describes them.

/** Limits as the MTA registers them, snake_case like every wire field; null: no hourly cap (JSON has no Infinity). */
export interface ControlLimits {
  max_connections: number;
  max_messages_per_hour: number | null;
}

export type PermitKind = 'connection' | 'message';

/** MTA -> proxy: asks for a permit (and registers its limits for the key). */
export interface Acquire {
  t: 'acquire';
  id: number;
  kind: PermitKind;
  key: string;
  limits: ControlLimits;
  /** A connection permit the MTA already held before its control connection broke: granted regardless. */
  reclaim?: boolean;
}

/** proxy -> MTA: the answer to acquire `id`. */
export interface Grant {
  t: 'grant';
  id: number;
  ok: boolean;
  /** With ok: false, when asking again makes sense (message permits: when the hourly window frees one). */
  wait_ms?: number;
}

/** MTA -> proxy: gives back one connection permit for the key; no answer. */
export interface ControlRelease {
  t: 'release';
  key: string;
}

export const CONTROL_CHANNEL = 'control';
export const MAX_KEY_LENGTH = 512;
