// A job's message as it goes on the wire: read from the spool, converted for
// the peer (RFC 6152) and DKIM-signed, in that order. Touches no queue, no
// throttle and no record: a failure is returned as the value for the caller
// to record.
import { hasEightBit, toSevenBit } from '../../../shared/smtp/seven-bit';
import type { OutboundSession } from '../../../shared/smtp/connector';
import type { Job } from '../records/attempt-recorder';
import type { DkimSigner } from './dkim';

/** Reads, converts for the peer (forPeer) and signs a job's message; a failure is kept as the value, for the sender to report. */
export function prepareMessage(job: Job, session: OutboundSession, signer: DkimSigner): Promise<Buffer | Error> {
  // Never rejects: a message read ahead and then put back is never awaited.
  return job.attempt.partition.read(job.attempt.entry).then(
    ({ envelope, body }) => {
      job.attempt.envelope = envelope;
      try {
        const signed = signer.sign(forPeer(body, session));
        job.attempt.dkimDomain = signed.domain;
        return signed.message;
      } catch (err) {
        return err as Error;
      }
    },
    (err: Error) => err,
  );
}

/**
 * RFC 6152: for a peer without 8BITMIME, 8-bit mail is converted to 7 bit
 * here, before DKIM signs it, so the signature covers the bytes sent (a
 * conversion after signing would break its body hash). Mail that cannot be
 * converted goes on as it is, and the session's send() fails it (5.6.3).
 */
export function forPeer(body: Buffer, session: OutboundSession): Buffer {
  if (!session.capabilities || session.capabilities.includes('8BITMIME') || !hasEightBit(body)) return body;
  try {
    return toSevenBit(body);
  } catch {
    return body;
  }
}
