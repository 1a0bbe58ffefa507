// The worker's part of receiving a drain: make a batch of drained messages
// durable in this worker's home partition with the state the source gave
// them (pending recipients, next retry, attempts, received, expires), then
// hand them to the delivery engine, which honours `next`. All appends are
// issued in one turn, so the partition's group commit makes the whole batch
// durable with one write.
import { errorCode } from '../../shared/errors';
import type { Intake } from '../intake/intake';
import type { Spool } from '../spool/spool';
import type { Envelope, SpoolEntry } from '../spool/types';
import type { StoreOutcome } from './endpoint';
import type { FromWorker, ToWorker } from '../ipc';
import type { DrainMessageHeader } from './protocol';

export interface DrainStoreRecord {
  header: DrainMessageHeader;
  body: Buffer | Uint8Array;
}

export function drainedEnvelope(h: DrainMessageHeader): Envelope {
  return {
    id: h.id,
    from: h.from,
    to: h.to,
    received: h.received,
    expires: h.expires,
    via: 'drain',
    client: h.client,
    pool: h.pool,
    vmta: h.vmta,
    meta: h.meta && Object.keys(h.meta).length > 0 ? h.meta : undefined,
    next: h.next,
    attempts: h.attempts,
    size: h.size,
  };
}

export async function storeDrained(spool: Spool, intake: Intake, schedule: (entry: SpoolEntry) => void, records: readonly DrainStoreRecord[]): Promise<StoreOutcome[]> {
  return Promise.all(
    records.map(async (r): Promise<StoreOutcome> => {
      const h = r.header;
      // Held queued by this worker already (an earlier attempt whose answer was lost) ...
      const holder = spool.partitions.find((p) => p.get(h.id) !== undefined);
      // ... unless that copy still waits for a sync mirror's barrier, which may yet withdraw it:
      // `duplicate` now would let the source drop its own copy too.
      if (holder?.awaitsConfirm(h.id)) return { status: 'unknown', reason: 'an earlier copy awaits the HA mirror' };
      if (holder) return { status: 'duplicate' };
      try {
        // The fleet shares one config; a pool or VMTA this node lacks could never be sent from.
        intake.checkRouting(h.pool, h.vmta);
      } catch (err) {
        return { status: 'refused', reason: (err as Error).message };
      }
      const body = Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength);
      try {
        const entry = await spool.home.appendMessage(drainedEnvelope(h), body, undefined, { unconfirmed: intake.mirrored });
        // Under a sync mirror the source may delete its copy only once the secondary holds this one.
        await intake.confirmMirrored(entry);
        schedule(entry);
        return { status: 'queued' };
      } catch (err) {
        const code = errorCode(err);
        if (code === 'EDUPLICATE') return spool.partitions.some((p) => p.awaitsConfirm(h.id)) ? { status: 'unknown', reason: 'an earlier copy awaits the HA mirror' } : { status: 'duplicate' };
        if (code === 'EMIRRORUNAVAILABLE') return { status: 'unavailable', reason: (err as Error).message };
        return { status: 'unavailable', reason: code === 'ENOSPC' ? 'spool disk is full' : code === 'EROFS' ? 'spool is read-only' : `spool write failed: ${(err as Error).message}` };
      }
    }),
  );
}

/**
 * Before a starting worker delivers anything, the primary records its queued
 * drained messages (only those carry `expires`) in the node's dedupe store:
 * after a crash between a batch's spool write and its seen-ids write, they
 * would otherwise be taken again once delivered. Resolves on the primary's ack.
 */
export function reportDrainHeld(spool: Spool, worker: number): Promise<void> {
  const ids = spool.partitions.flatMap((p) => [...p.entries()].filter((e) => e.expires !== undefined).map((e) => e.id));
  if (ids.length === 0 || !process.send) return Promise.resolve();
  return new Promise((resolve) => {
    const onMessage = (m: ToWorker): void => {
      if (m.type !== 'drain-held-ack') return;
      process.off('message', onMessage);
      resolve();
    };
    process.on('message', onMessage);
    process.send!({ type: 'drain-held', worker, ids } satisfies FromWorker);
  });
}
