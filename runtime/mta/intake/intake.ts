import { EventEmitter } from 'node:events';
import { VolleyError } from '../../shared/errors';
import type { VolleyConfig } from '../../shared/config/types';
import type { SpoolPartition } from '../spool/partition';
import type { Envelope, SpoolEntry } from '../spool/types';
import { newMessageId } from '../message-id';
import { MAX_TRANSACTION_BODY, transactionProblem, transactionTooLarge } from '../../shared/proxy-protocol/envelope';
import { isValidMailbox } from './address';

export interface Submission {
  id?: string;
  from: string;
  to: string[];
  /** The RFC 5322 message as it will be sent (control headers already removed). */
  message: Buffer;
  via: Envelope['via'];
  client?: Envelope['client'];
  pool?: string;
  vmta?: string;
  meta?: Record<string, string>;
}

export type RejectReason = 'bad-sender' | 'bad-recipient' | 'no-recipients' | 'too-many-recipients' | 'unknown-pool' | 'unknown-vmta' | 'oversize' | 'spool-full' | 'spool-readonly' | 'spool-error' | 'draining' | 'mirror-unavailable';

/** What intake asks of a sync HA mirror (runtime/shared/mirror-sync/client.ts): resolves once the secondary holds everything written so far. */
export interface MirrorBarrier {
  barrier(): Promise<unknown>;
}

/** A refusal with everything a listener needs to answer: an SMTP code, an enhanced code, an HTTP status. */
export class IntakeError extends VolleyError {
  constructor(
    readonly reason: RejectReason,
    readonly smtpCode: number,
    readonly enhanced: string,
    readonly httpStatus: number,
    message: string,
  ) {
    super(`E${reason.toUpperCase().replace(/-/g, '')}`, message);
  }
}

/**
 * The one place where mail becomes accepted: SMTP, HTTP and the drain endpoint
 * all end here. It checks what can be checked without the network, writes the
 * message to this worker's home partition, and resolves only once it is durable
 * (under a sync HA mirror: durable on the secondary too).
 *
 * Events: 'accepted' (entry, partition) once the message may be acknowledged;
 * 'withdrawn' (id, why, error?, unmirrored?) for a message written here that
 * the mirror could not confirm: its record is marked done again (the client
 * is told to retry, maybe elsewhere, so this copy must never be delivered),
 * `error` is set when even that failed, and `unmirrored` when the mirror did
 * not confirm the done record before the refusal (WITHDRAWAL_BARRIER_MS).
 */
export class Intake extends EventEmitter {
  private config: VolleyConfig;
  private pools = new Set<string>();
  private vmtas = new Set<string>();
  /** Set by `volley drain`: this node takes no more mail (SMTP 421 4.3.2, HTTP 503) while its queue moves elsewhere. */
  draining = false;

  constructor(
    private readonly partition: SpoolPartition,
    config: VolleyConfig,
    private readonly mirror?: MirrorBarrier,
  ) {
    super();
    this.config = config;
    this.apply(config);
  }

  /** Under a sync mirror: appends are made `unconfirmed` (partition.ts) until `confirmMirrored` says they may be delivered. */
  get mirrored(): boolean {
    return this.mirror !== undefined;
  }

  apply(config: VolleyConfig): void {
    this.config = config;
    this.pools = new Set(config.pools.map((p) => p.name));
    this.vmtas = new Set(config.vmtas.map((v) => v.name));
  }

  /** Checks a routing choice early (SMTP answers it at end of DATA, HTTP per message). */
  checkRouting(pool?: string, vmta?: string): void {
    if (pool !== undefined && !this.pools.has(pool)) throw new IntakeError('unknown-pool', 550, '5.7.1', 422, `unknown pool "${pool}"`);
    if (vmta !== undefined && !this.vmtas.has(vmta)) throw new IntakeError('unknown-vmta', 550, '5.7.1', 422, `unknown virtual MTA "${vmta}"`);
  }

  async submit(sub: Submission): Promise<SpoolEntry> {
    if (this.draining) throw DRAINING;
    if (sub.from !== '' && !isValidMailbox(sub.from)) throw new IntakeError('bad-sender', 553, '5.1.7', 422, `invalid sender address "${sub.from}"`);
    if (sub.to.length === 0) throw new IntakeError('no-recipients', 554, '5.5.1', 422, 'no valid recipients');
    if (sub.to.length > this.config.smtp.maxRecipients) {
      throw new IntakeError('too-many-recipients', 452, '4.5.3', 422, `too many recipients (at most ${this.config.smtp.maxRecipients})`);
    }
    for (const r of sub.to) if (!isValidMailbox(r)) throw new IntakeError('bad-recipient', 553, '5.1.3', 422, `invalid recipient address "${r}"`);
    // The proxy link's frame limit binds whatever the config says: a larger message could never leave.
    const maxSize = Math.min(this.config.smtp.maxMessageSize, MAX_TRANSACTION_BODY);
    if (sub.message.length > maxSize) throw new IntakeError('oversize', 552, '5.3.4', 413, `message exceeds the maximum size of ${maxSize} bytes`);
    // The proxy's own rule, last: nothing accepted here can be refused on the way out
    // (nor can a message near the limit whose many long recipients overflow one frame).
    const problem = transactionProblem(sub.from, sub.to);
    if (problem) throw new IntakeError('bad-recipient', 553, '5.1.3', 422, problem);
    if (transactionTooLarge(sub.from, sub.to, sub.message.length)) {
      throw new IntakeError('oversize', 552, '5.3.4', 413, 'the message and its recipients exceed what one proxy frame carries');
    }
    this.checkRouting(sub.pool, sub.vmta);
    const envelope: Envelope = {
      id: sub.id ?? newMessageId(),
      from: sub.from,
      to: sub.to,
      received: Date.now(),
      via: sub.via,
      client: sub.client,
      pool: sub.pool,
      vmta: sub.vmta,
      meta: sub.meta && Object.keys(sub.meta).length > 0 ? sub.meta : undefined,
      size: sub.message.length,
    };
    let entry: SpoolEntry;
    // Under a sync mirror the barrier is asked as soon as the record is in the
    // file (the mirror replicates what the files hold), not once it is durable
    // here: the secondary's fsync then runs alongside the local one. The 250
    // still waits for both: the append resolving (local) and the barrier (secondary).
    let asked: Promise<unknown> | undefined;
    const written = this.mirror ? (): void => void (asked = quiet(this.mirror!.barrier())) : undefined;
    try {
      // Out of delivery's sight until the barrier answers: a refused message must never have been sent.
      entry = await this.partition.appendMessage(envelope, sub.message, written, { unconfirmed: this.mirrored });
    } catch (err) {
      throw spoolRefusal(err);
    }
    await this.confirmMirrored(entry, asked);
    this.emit('accepted', entry, this.partition);
    return entry;
  }

  /**
   * Under a sync mirror, waits until the secondary holds `entry` (just written
   * to this intake's partition, `unconfirmed`) before it may be acknowledged
   * and delivered (then it is confirmed in the partition); when the mirror
   * cannot confirm it, withdraws it and throws MIRROR_UNAVAILABLE. Without a
   * sync mirror, returns at once. `asked`: the barrier already requested once
   * the record was in the file (it covers `entry`); without it one is asked now.
   */
  async confirmMirrored(entry: SpoolEntry, asked?: Promise<unknown>): Promise<void> {
    if (!this.mirror) return;
    try {
      await (asked ?? this.mirror.barrier());
      this.partition.confirm(entry.id);
    } catch (err) {
      // Not acknowledged: the client retries, perhaps on another MTA. This copy
      // is withdrawn durably before the answer, so it is never delivered too.
      const withdrawn = await this.partition.markDone({ id: entry.id, reason: 'withdrawn' }).then(() => undefined, (e: Error) => e);
      // The done record reaches the secondary like any write, but only with the next scan: a primary that dies before
      // it would leave the promoted secondary delivering this copy besides the client's retry. A short barrier covers it.
      const unmirrored = withdrawn ? undefined : await mirrorWithdrawal(this.mirror);
      this.emit('withdrawn', entry.id, (err as Error).message, withdrawn, unmirrored);
      throw MIRROR_UNAVAILABLE;
    }
  }
}

/**
 * How long a refusal (451) waits for the mirror to confirm the withdrawal's
 * done record. Bounded: the secondary just missed a barrier, so it may well
 * miss this one; then the 451 goes out anyway and the message is counted as a
 * withdrawal the secondary may not know of (a possible duplicate only if this
 * primary dies before its next scan reaches the secondary).
 */
export const WITHDRAWAL_BARRIER_MS = 1000;

/** Asks a barrier for a withdrawal's done record: undefined once the secondary holds it, else why not (failed, or not within WITHDRAWAL_BARRIER_MS). */
async function mirrorWithdrawal(mirror: MirrorBarrier): Promise<Error | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<Error>((resolve) => {
    timer = setTimeout(() => resolve(new VolleyError('EMIRRORSYNC', `the mirror did not confirm the withdrawal within ${WITHDRAWAL_BARRIER_MS} ms`)), WITHDRAWAL_BARRIER_MS);
  });
  try {
    return await Promise.race([
      quiet(mirror.barrier()).then(
        () => undefined,
        (e: Error) => e,
      ),
      bound,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The answer to everything offered to a node being drained: try another node (the lb and the NLB have moved away already). */
export const DRAINING = new IntakeError('draining', 421, '4.3.2', 503, 'this node is being drained and takes no more mail; try another node');

/** Under a sync mirror whose secondary could not confirm the message in time (policy block), or whose daemon is gone: try again, maybe elsewhere. */
export const MIRROR_UNAVAILABLE = new IntakeError('mirror-unavailable', 451, '4.3.0', 503, 'the HA mirror could not confirm a second copy of this message: not accepted, try again later or another MTA');

/**
 * A barrier asked before the local write is known to be durable: if that
 * write fails nobody awaits it, and its rejection must not be unhandled. The
 * returned promise still rejects for whoever does await it.
 */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

function spoolRefusal(err: unknown): IntakeError {
  const code = (err as { code?: string }).code;
  if (code === 'ENOSPC') return new IntakeError('spool-full', 452, '4.3.1', 503, 'insufficient system storage, try again later');
  if (code === 'EROFS') return new IntakeError('spool-readonly', 451, '4.3.0', 503, 'queue is read-only, try again later');
  return new IntakeError('spool-error', 451, '4.3.0', 503, 'local error in processing, try again later');
}
