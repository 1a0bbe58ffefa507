// The `mirror` section of the MTA config: whether this MTA runs under an HA
// mirror in mode sync (runtime/mirror). Then no message is acknowledged (SMTP
// 250, HTTP 200) before the mirror daemon says the secondary holds it
// durably; a missing or silent mirror daemon means a 451 / 503, never a 250.
// Absent, or mode async: intake acknowledges after its own fsync alone.

import { parseDuration } from '../units';
import { converter } from './events';

type Dur = string | number;
type Path = (string | number)[];
type Report = (path: Path, message: string) => void;

export const mirrorSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'this node is one of an HA mirror pair; mode sync: no message is acknowledged before the secondary holds it',
  properties: {
    mode: { enum: ['async', 'sync'], description: 'sync: ask the mirror daemon for a barrier before every acknowledgement (the daemon must run mode sync too)' },
    sync_socket: { type: 'string', description: "the mirror daemon's sync_socket (default <persistent path>/mirror/sync.sock)" },
    timeout: { type: ['string', 'integer'], description: "how long intake waits for the mirror daemon's answer before refusing (default 5s; more than the daemon's sync_timeout, so its policy answers first)" },
  },
};

/** How long intake waits for the mirror daemon's answer when `mirror.timeout` is not set. */
export const MIRROR_TIMEOUT_DEFAULT_MS = 5000;

export interface RawMirror {
  mode?: 'async' | 'sync';
  sync_socket?: string;
  timeout?: Dur;
}

export interface MtaMirrorConfig {
  mode: 'async' | 'sync';
  /** Absent: `<persistent path>/mirror/sync.sock`, resolved by the worker (the path is a flag, not config). */
  syncSocket?: string;
  timeoutMs: number;
}

export function normaliseMirror(raw: RawMirror | undefined, report: Report): MtaMirrorConfig | undefined {
  if (!raw) return undefined;
  const timeoutMs = converter(report, parseDuration)(raw.timeout, MIRROR_TIMEOUT_DEFAULT_MS, ['mirror', 'timeout']);
  if (timeoutMs <= 0) report(['mirror', 'timeout'], 'must be more than 0');
  return { mode: raw.mode ?? 'async', syncSocket: raw.sync_socket, timeoutMs };
}
