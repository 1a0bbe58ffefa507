// A node's durable place in the pair: `<persistent>/mirror/state.json` holds
// {role, epoch, caught_up, outdated, peer_outdated}. Written whole to a temporary file, fsynced,
// renamed over the old one and the directory fsynced, so a power cut leaves
// either the old state or the new one, never a mix: a node must never come
// back believing it is a primary of an epoch it already gave up.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { VolleyError } from '../shared/errors';

export type MirrorRole = 'primary' | 'secondary';

export interface MirrorState {
  role: MirrorRole;
  epoch: number;
  /** The secondary holds everything the primary had when it last said so; false while a catch-up runs. */
  caughtUp: boolean;
  /**
   * This node may lack mail its primary acknowledged (a sync secondary cut off
   * while the pair's policy is degrade): never promoted automatically, and
   * manually only with --force. Cleared once it is caught up again.
   */
  outdated?: boolean;
  /** Primary side: it acknowledged mail without the secondary (degraded); the arbiter lease carries this. */
  peerOutdated?: boolean;
}

/** The folder the mirror keeps for itself under the persistent path; never replicated. */
export function mirrorDir(persistentPath: string): string {
  return join(persistentPath, 'mirror');
}

export function statePath(persistentPath: string): string {
  return join(mirrorDir(persistentPath), 'state.json');
}

/** The stored state; a node that never ran a mirror is a secondary of epoch 0 (promotion is always explicit). */
export function readState(persistentPath: string): MirrorState {
  const file = statePath(persistentPath);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { role: 'secondary', epoch: 0, caughtUp: false };
    throw new VolleyError('EMIRRORSTATE', `cannot read ${file}: ${(err as Error).message}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new VolleyError('EMIRRORSTATE', `${file} is not JSON: fix or remove it (a removed file makes this node a secondary of epoch 0)`);
  }
  const s = v as { role?: unknown; epoch?: unknown; caught_up?: unknown; outdated?: unknown; peer_outdated?: unknown };
  if ((s.role !== 'primary' && s.role !== 'secondary') || !Number.isSafeInteger(s.epoch) || (s.epoch as number) < 0) {
    throw new VolleyError('EMIRRORSTATE', `${file}: expected {"role": "primary"|"secondary", "epoch": N}`);
  }
  return { role: s.role, epoch: s.epoch as number, caughtUp: s.caught_up === true, outdated: s.outdated === true, peerOutdated: s.peer_outdated === true };
}

export function writeState(persistentPath: string, state: MirrorState): void {
  const dir = mirrorDir(persistentPath);
  mkdirSync(dir, { recursive: true });
  const file = statePath(persistentPath);
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, `${JSON.stringify({ role: state.role, epoch: state.epoch, caught_up: state.caughtUp, outdated: state.outdated === true, peer_outdated: state.peerOutdated === true })}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  fsyncDir(dir);
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
