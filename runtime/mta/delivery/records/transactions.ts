// The transactions of one open session, and the path of each job's result to
// the attempt recorder. Owns the order a session's messages go in
// (pipelining with read-ahead, stall detection), what a transaction's
// failure means for its recipients, and the order of a deferral's two
// consequences: the throttle authority's backoff pause first, then the
// attempt's record. It takes jobs from its destination's queue and puts back
// those it did not send; opening and closing the session, and the connection
// permit, are connect/connection.ts'.
import type { VolleyConfig } from '../../../shared/config/types';
import type { OutboundSession, RecipientResult } from '../../../shared/smtp/connector';
import type { DkimSigner } from '../dkim/dkim';
import { prepareMessage } from '../dkim/prepare';
import { answersSlowly, average, wantsConnection, type Destination, type Destinations } from '../queues/destinations';
import type { Parking } from '../scheduler/parking';
import type { ThrottleAuthority } from '../throttle/throttle-authority';
import type { ThrottleKey } from '../throttle/throttle-key';
import type { Limits } from '../throttle/throttles';
import type { AttemptRecorder, Job, JobContext } from './attempt-recorder';
import { transactionFailure, type DeliveryFailure } from './outcomes';

/** Messages one connection carries at most before it QUITs. */
const MESSAGES_PER_CONNECTION = 100;

export interface TransactionsOptions {
  config: () => VolleyConfig;
  signer: () => DkimSigner;
  now: () => number;
  authority: ThrottleAuthority;
  recorder: AttemptRecorder;
  parking: Parking;
  destinations: Destinations;
  stopped: () => boolean;
  /** Opens connections for the destinations that may have work (a stalled connection wants another). */
  pump: () => void;
  /** The destination's next job, waited for briefly when its queue is empty (connect/connection.ts). */
  nextJob: (dest: Destination) => Promise<Job | undefined>;
}

export class Transactions {
  constructor(private readonly o: TransactionsOptions) {}

  /**
   * The transactions of one connection. Where the session pipelines
   * (RFC 2920), the next message is read from the spool while the current
   * one is on the wire, and its envelope follows the current body at once:
   * in steady state a message costs one round trip and one write instead of
   * two. Without pipelining, one transaction at a time. True when a
   * throttle or a backoff rule paused the destination.
   */
  async run(dest: Destination, session: OutboundSession, key: ThrottleKey, limits: Limits): Promise<boolean> {
    const { authority, recorder, destinations } = this.o;
    const overlap = session.pipelined === true && this.o.config().delivery.pipelineTransactions;
    const outstanding: Promise<void>[] = [];
    let halted = false;
    let ahead: { job: Job; message: Promise<Buffer | Error> } | undefined;
    // Checked again after each wait: a pause, a closing server or a stop can come in meanwhile.
    const over = (): boolean => halted || !session.usable || this.o.stopped();
    // Transactions sent and not yet answered. A second pipelined behind a
    // first still awaiting its final reply stalls the connection: at a slow
    // MX the queued mail is better off on a connection of its own.
    let inFlight = 0;
    let stalled = false;
    let ended = false;
    const setStalled = (on: boolean): void => {
      if (on === stalled || ended) return;
      stalled = on;
      dest.stalled += on ? 1 : -1;
      if (on && wantsConnection(dest)) {
        destinations.touch(dest);
        this.o.pump();
      }
    };
    try {
      for (let sent = 0; sent < MESSAGES_PER_CONNECTION && !over(); sent++) {
        const taken = ahead;
        ahead = undefined;
        const job = taken?.job ?? dest.jobs.shift() ?? (await this.o.nextJob(dest));
        if (!job) break;
        // Queued before its partition stopped starting deliveries: not sent now; it waits, parked, as it was.
        if (!this.o.parking.mayDeliver(job.attempt.partition)) {
          recorder.abandon(job);
          sent--;
          continue;
        }
        // No message permit is spent on a connection that is done already.
        const permit = over() ? undefined : await authority.tryMessage(key, limits);
        if (permit && !permit.ok) {
          dest.heldUntil = this.o.now() + permit.waitMs; // waiting, not failing
          halted = true;
        }
        if (!permit?.ok || over()) {
          dest.jobs.unshift(job);
          break;
        }
        const message = taken?.message ?? prepareMessage(job, session, this.o.signer());
        // Not where this transaction will wait behind a held reply: the next message would wait two.
        if (overlap && sent + 1 < MESSAGES_PER_CONNECTION && !(inFlight > 0 && answersSlowly(dest))) {
          const next = dest.jobs.shift();
          if (next) ahead = { job: next, message: prepareMessage(next, session, this.o.signer()) };
        }
        let bodySent: (() => void) | undefined;
        const sentBody = overlap ? new Promise<void>((resolve) => (bodySent = resolve)) : undefined;
        setStalled(++inFlight >= 2);
        const done = this.send(job, message, session, dest, bodySent).then(async (tx) => {
          setStalled(--inFlight >= 2);
          // A deferral that matches a backoff rule pauses the destination
          // before the attempt is logged: once its line is in the attempt log,
          // no worker starts another delivery there (they ask the same authority).
          // The pause holds here before the record too: a record that throws
          // must not leave this connection sending to a paused destination.
          try {
            const temp = tx.results.find((r) => r.outcome === 'deferred');
            const pause = temp ? await authority.onTemporaryFailure(key, dest.domain, temp.reply) : 0;
            if (pause > 0) {
              dest.heldUntil = this.o.now() + pause;
              halted = true;
            }
          } finally {
            recorder.record(job, tx.results, tx.context);
          }
        });
        outstanding.push(done);
        // Pipelined: on to the next message once this body is out (or the transaction ended before it).
        await (sentBody ? Promise.race([sentBody, done]) : done);
      }
      if (ahead) dest.jobs.unshift(ahead.job); // read ahead but not sent: it waits for the next connection
      await Promise.all(outstanding);
      return halted;
    } finally {
      setStalled(false);
      ended = true;
    }
  }

  /** Every job queued for `dest` gets `failure` as its outcome. */
  failQueued(dest: Destination, failure: DeliveryFailure): void {
    for (const job of dest.jobs.splice(0)) this.recordFailure(job, dest, failure);
  }

  /** One job gets `failure` as its outcome, with nothing on the wire. */
  recordFailure(job: Job, dest: Destination, failure: DeliveryFailure): void {
    const results = job.rcpts.map((rcpt) => ({ rcpt, reply: failure.reply, outcome: failure.outcome }));
    this.o.recorder.record(job, results, { source: dest.source, transactionMs: 0, errorKind: failure.errorKind, tls: failure.tls });
  }

  /** One transaction on the wire: its results and what the attempt log says of it (recorded by the caller). */
  private async send(job: Job, prepared: Promise<Buffer | Error>, session: OutboundSession, dest: Destination, onBodySent?: () => void): Promise<{ results: RecipientResult[]; context: JobContext }> {
    const t0 = this.o.now();
    let results: RecipientResult[];
    let errorKind: string | undefined;
    try {
      const message = await prepared;
      if (message instanceof Error) throw message;
      const tx = await session.send(job.mailFrom ?? job.attempt.envelope!.from, job.rcpts, message, { onBodySent });
      results = tx.recipients;
      if (tx.dataMs > 0) dest.replyMs = average(dest.replyMs, tx.dataMs);
    } catch (err) {
      const failure = transactionFailure(err);
      results = job.rcpts.map((rcpt) => ({ rcpt, reply: failure.reply, outcome: failure.outcome }));
      errorKind = failure.errorKind;
    }
    return { results, context: { source: dest.source, session, transactionMs: this.o.now() - t0, errorKind } };
  }
}
