// The arbiter for automatic failover: one lease object with conditional
// writes, shared by the two nodes of a pair. The primary holds the lease and
// renews it; the secondary takes it over only once it has expired, with a
// write conditioned on the version it read, so two nodes can never both
// believe they took the same lease. Two stores implement it: a file
// (arbiter-file.ts, for tests and a pair on one machine or a shared disk)
// and an S3 object (arbiter-s3.ts, with If-Match / If-None-Match).
import { VolleyError } from '../shared/errors';

export interface Lease {
  /** The node name (mirror config `name`) of the primary that holds it. */
  holder: string;
  /** The epoch that holder is primary of. */
  epoch: number;
  /** Milliseconds since 1970: after this the lease is free for the peer to take. */
  expires_at: number;
  /** The holder acknowledged mail its secondary does not hold (sync degraded): the secondary must not take over. */
  peer_outdated?: boolean;
}

export interface LeaseRead {
  lease?: Lease;
  /** The version read: what a conditional write names. Absent: there is no lease object yet. */
  etag?: string;
}

export interface Arbiter {
  /** Where the lease lives, for logs and status. */
  readonly where: string;
  read(): Promise<LeaseRead>;
  /**
   * Writes `lease` if the stored version is still `ifMatch` (undefined: only
   * if no lease exists yet) and returns the new version; a lost race throws a
   * VolleyError with code ELEASECONFLICT.
   */
  write(lease: Lease, ifMatch: string | undefined): Promise<string>;
}

export const LEASE_CONFLICT = 'ELEASECONFLICT';

export function leaseConflict(where: string): VolleyError {
  return new VolleyError(LEASE_CONFLICT, `the lease at ${where} changed since it was read (another node wrote it)`);
}

/** The stored form: JSON with the expiry as an ISO time, so an operator can read it. */
export function serializeLease(lease: Lease): string {
  return `${JSON.stringify({ holder: lease.holder, epoch: lease.epoch, expires_at: new Date(lease.expires_at).toISOString(), ...(lease.peer_outdated ? { peer_outdated: true } : {}) })}\n`;
}

export function parseLease(text: string, where: string): Lease {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new VolleyError('EARBITER', `the lease at ${where} is not JSON`);
  }
  const l = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  const expires = typeof l.expires_at === 'string' ? Date.parse(l.expires_at) : NaN;
  if (typeof l.holder !== 'string' || !l.holder || !Number.isSafeInteger(l.epoch) || (l.epoch as number) < 0 || !Number.isFinite(expires)) {
    throw new VolleyError('EARBITER', `the lease at ${where} is not {holder, epoch, expires_at}`);
  }
  return { holder: l.holder, epoch: l.epoch as number, expires_at: expires, ...(l.peer_outdated === true ? { peer_outdated: true } : {}) };
}
