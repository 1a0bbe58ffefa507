// The sync-barrier protocol between an MTA worker and its node's `volley
// mirror` daemon (mode sync), over a Unix socket: newline-terminated ASCII
// lines, versioned by a greeting both sides send first. The MTA asks
// "everything I have written up to now: is it durable on the secondary?"
// and the mirror answers once it is (or once its policy says otherwise):
//
//   both sides, first:  VOLLEY-MIRROR-SYNC 1
//   MTA -> mirror:      BARRIER <n>
//   mirror -> MTA:      OK <n> sync|degraded
//                       FAIL <n> <reason> <free text>
//
// <n> is the client's own counter (answers may come in any order). The MTA
// and the mirror are separate daemons: they share this file, never code of
// one another.
import { VolleyError } from '../errors';

export const SYNC_PROTOCOL_VERSION = 1;
export const SYNC_GREETING = `VOLLEY-MIRROR-SYNC ${SYNC_PROTOCOL_VERSION}`;
/** No line of this protocol is longer; a longer one is a peer speaking something else. */
export const MAX_SYNC_LINE = 1024;

/**
 * Why a barrier failed: the secondary did not acknowledge within sync_timeout
 * under policy block, this node is not the primary, or the mirror broke.
 */
export type BarrierFailure = 'timeout' | 'not-primary' | 'error';

export type BarrierAnswer = { ok: true; state: 'sync' | 'degraded' } | { ok: false; reason: BarrierFailure; message: string };

export type SyncLine = { t: 'greeting'; version: number } | { t: 'barrier'; n: number } | { t: 'answer'; n: number; answer: BarrierAnswer };

const FAILURES: readonly BarrierFailure[] = ['timeout', 'not-primary', 'error'];

export function barrierLine(n: number): string {
  return `BARRIER ${n}\n`;
}

export function answerLine(n: number, a: BarrierAnswer): string {
  // Free text on one line: a newline in it would end the answer early.
  return a.ok ? `OK ${n} ${a.state}\n` : `FAIL ${n} ${a.reason} ${a.message.replace(/[\r\n]+/g, ' ').slice(0, 512)}\n`;
}

/** Parses one line (without its newline); anything else is EMIRRORSYNC. */
export function parseSyncLine(line: string): SyncLine {
  const parts = line.split(' ');
  const n = Number(parts[1]);
  const counter = Number.isSafeInteger(n) && n >= 0 && /^\d+$/.test(parts[1] ?? '');
  if (parts[0] === 'VOLLEY-MIRROR-SYNC' && counter && parts.length === 2) return { t: 'greeting', version: n };
  if (parts[0] === 'BARRIER' && counter && parts.length === 2) return { t: 'barrier', n };
  if (parts[0] === 'OK' && counter && parts.length === 3 && (parts[2] === 'sync' || parts[2] === 'degraded')) return { t: 'answer', n, answer: { ok: true, state: parts[2] } };
  if (parts[0] === 'FAIL' && counter && FAILURES.includes(parts[2] as BarrierFailure)) {
    return { t: 'answer', n, answer: { ok: false, reason: parts[2] as BarrierFailure, message: parts.slice(3).join(' ') } };
  }
  throw new VolleyError('EMIRRORSYNC', `not a mirror sync line: ${JSON.stringify(line.slice(0, 80))}`);
}

/**
 * Splits a byte stream into lines: feed it chunks, it calls `onLine` per
 * complete line and throws EMIRRORSYNC on one longer than MAX_SYNC_LINE.
 */
export function lineSplitter(onLine: (line: string) => void): (chunk: Buffer) => void {
  let rest = '';
  return (chunk) => {
    rest += chunk.toString('latin1');
    let i: number;
    while ((i = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, i);
      rest = rest.slice(i + 1);
      onLine(line);
    }
    if (rest.length > MAX_SYNC_LINE) throw new VolleyError('EMIRRORSYNC', `a mirror sync line longer than ${MAX_SYNC_LINE} bytes`);
  };
}
