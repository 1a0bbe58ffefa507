// Fencing this node's MTA: intake stops first, at once, over the MTA's admin
// API (POST /drain/stop: new SMTP sessions get 421, open ones at their next
// command, the HTTP API 503, delivery stops), then the process is stopped
// (SIGTERM: a graceful stop, attempts in flight are finished and recorded).
// The admin call needs the admin token (`mta_admin_token_file`, or
// VOLLEY_ADMIN_TOKEN); without one, or when the call fails or is slow, the
// SIGTERM alone stops intake (the MTA closes its listeners first). A lock whose
// pid is now another program (mta-identity.ts) is stale: nothing is fenced.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostPort } from '../shared/host-port';
import type { Logger } from '../shared/log';
import { mtaIdentity } from './mta-identity';

export const MTA_ADMIN_TOKEN_ENV = 'VOLLEY_ADMIN_TOKEN';

/** How long the drain/stop call may take before the SIGTERM goes anyway. */
const STOP_INTAKE_TIMEOUT_MS = 1_000;

export interface MtaFenceOptions {
  persistentPath: string;
  mtaAdmin: HostPort;
  tokenFile?: string;
  logger: Logger;
  /** Tests: record the signal instead of sending it. */
  kill?: (pid: number) => void;
  /** How long the drain/stop call may take before the SIGTERM goes anyway. */
  intakeTimeoutMs?: number;
}

export function mtaAdminUrl(hp: HostPort): string {
  const host = hp.address === '0.0.0.0' ? '127.0.0.1' : hp.address === '::' ? '[::1]' : hp.address.includes(':') ? `[${hp.address}]` : hp.address;
  return `http://${host}:${hp.port}`;
}

/** The admin token, or undefined when none is configured (the fence then stops the process only). */
export function mtaAdminToken(tokenFile: string | undefined): string | undefined {
  if (tokenFile) return readFileSync(tokenFile, 'utf8').trim() || undefined;
  return process.env[MTA_ADMIN_TOKEN_ENV] || undefined;
}

/** The pid in the MTA's lock on this persistent path, when there is one (alive or not). */
export function lockPid(persistentPath: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(persistentPath, 'mta.lock'), 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The pid of an MTA running on this persistent path. A stale lock after
 * kill -9 names a dead pid, or one another program reused since (a switchover
 * would signal it and wait for it; a secondary would refuse its primary
 * while it runs): none.
 */
export function liveMtaPid(persistentPath: string): number | undefined {
  const pid = lockPid(persistentPath);
  if (pid === undefined) return undefined;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  return mtaIdentity(pid, persistentPath).kind === 'other' ? undefined : pid;
}

/** POST /drain/stop on the local MTA; true when it answered 200. Never throws. */
export async function stopIntake(o: MtaFenceOptions, token: string | undefined, timeoutMs: number = STOP_INTAKE_TIMEOUT_MS): Promise<{ ok: boolean; inflight?: number; error?: string }> {
  if (!token) return { ok: false, error: `no MTA admin token (mta_admin_token_file or ${MTA_ADMIN_TOKEN_ENV})` };
  try {
    const res = await fetch(`${mtaAdminUrl(o.mtaAdmin)}/drain/stop`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
    const body = (await res.json().catch(() => ({}))) as { inflight?: number; error?: string };
    if (res.status !== 200) return { ok: false, error: `POST /drain/stop answered ${res.status}${body.error ? `: ${body.error}` : ''}` };
    return { ok: true, inflight: typeof body.inflight === 'number' ? body.inflight : undefined };
  } catch (err) {
    return { ok: false, error: `POST /drain/stop: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}` };
  }
}

/**
 * Stops intake and then the MTA holding the persistent path. Resolves once
 * both were asked (not once the MTA has exited).
 */
export async function fenceMta(o: MtaFenceOptions, why: string): Promise<void> {
  const pid = lockPid(o.persistentPath);
  if (pid === undefined) return o.logger.info({ why }, 'mirror: no MTA holds the persistent path: nothing to fence');
  if (pid === process.pid) return;
  // A stale lock (the MTA died without removing it) whose pid now belongs to another program: no MTA holds the path.
  const who = mtaIdentity(pid, o.persistentPath);
  if (who.kind === 'other') return o.logger.warn({ pid, cmdline: who.cmdline.slice(0, 200), why }, 'mirror: the MTA lock is stale (its pid is another program now, not signalled): no MTA holds the persistent path: nothing to fence');
  let token: string | undefined;
  try {
    token = mtaAdminToken(o.tokenFile);
  } catch (err) {
    o.logger.error({ err: (err as Error).message }, 'mirror: cannot read the MTA admin token: fencing by SIGTERM alone');
  }
  const intake = await stopIntake(o, token, o.intakeTimeoutMs);
  if (intake.ok) o.logger.warn({ pid, why }, 'mirror: fenced the MTA\'s intake (POST /drain/stop)');
  else o.logger.warn({ pid, why, err: intake.error }, 'mirror: could not stop the MTA\'s intake over its admin API: SIGTERM alone stops it');
  try {
    if (o.kill) o.kill(pid);
    else process.kill(pid, 'SIGTERM');
    o.logger.warn({ pid, why }, 'mirror: fenced the MTA (SIGTERM): it stops intake and delivery');
  } catch (err) {
    o.logger.info({ pid, err: (err as Error).message }, 'mirror: the MTA named by the lock is not running');
  }
}
