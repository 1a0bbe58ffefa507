// The transactions of one MTA link's MX session, run in the order their
// frames came and answered in that order, with the next one's envelope
// written to the MX right behind the current body when the MX pipelines
// (the protocol's PIPELINING, codec.ts): a backlog through the proxy then
// costs one MX round trip a message, as on the direct path, not two.
import { ProtocolError, transactionProblem, type Frame, type FrameChannel } from '../shared/proxy-protocol';
import type { TransactionFailed, TransactionReply } from '../shared/proxy-protocol/messages';
import type { TransactionResult } from '../shared/smtp/connector';
import type { MxSession } from './pool';

export interface TransactionPipeHooks {
  /** Whether the session's sending IP is still hosted (a reload may remove it mid-transaction). */
  hosted: (sendingIp: string) => boolean;
  /** Called as each transaction reaches the MX, for the proxy's counters. */
  counted: () => void;
  /** Called each time the last transaction in flight has been answered. */
  drained: () => void;
}

/** What became of a transaction at the MX, before its answer goes out. */
type Outcome = { tx: TransactionResult } | { failed: string; lost: boolean; proxyLink?: true };

/** One transaction taken: its outcome once the MX has answered (or it never reached the MX). */
interface Slot {
  outcome?: Outcome;
}

// Plain callbacks rather than an async function and two promise chains per
// transaction: on the fleet path a proxy handles each message in its own
// turns of the event loop, and every promise hop is paid per message
// (test/bench/README.md, issue 20: proxy_cpu_us_per_msg).
export class TransactionPipe {
  /** Transactions taken and not yet answered. */
  inFlight = 0;
  /** Answers still owed, in the order the frames came; the head's goes out first. */
  private readonly slots: Slot[] = [];
  /** A transaction is at the MX and its body is not written yet: the next one waits (RFC 2920 lets it go only behind a body). */
  private bodyBusy = false;
  /** Transactions waiting for the body ahead of them to be written, oldest first. */
  private readonly waitingBody: (() => void)[] = [];
  /** A reload removed the sending IP: the session is QUIT once the transactions already at the MX are answered. */
  private retiring = false;
  private readonly waiters: (() => void)[] = [];

  constructor(
    /** The MX session; undefined once a transaction lost it. */
    public mx: MxSession | undefined,
    private readonly channel: FrameChannel,
    private readonly hooks: TransactionPipeHooks,
  ) {}

  /** False once the session was lost or is being retired: a transaction frame then gets transaction_failed. */
  get open(): boolean {
    return this.mx !== undefined && !this.retiring;
  }

  /**
   * Takes a transaction frame (throws ProtocolError on a malformed one, which
   * ends the link): it reaches the MX once the previous body is written, and
   * its answer goes out after the previous answer.
   */
  take(frame: Frame): void {
    const { from, to } = frame.header as { from?: unknown; to?: unknown };
    // The MTA's intake refuses the same envelopes (shared rule), so this only trips on a broken peer.
    const problem = transactionProblem(from, to);
    if (problem) throw new ProtocolError(`bad transaction request: ${problem}`);
    const slot = this.owe();
    const start = (): void => this.start(slot, from as string, to as string[], frame.body ?? Buffer.alloc(0));
    if (this.bodyBusy) this.waitingBody.push(start);
    else start();
  }

  /** Answers a transaction frame transaction_failed without sending it to the MX (the proxy stopping, a revoked link). */
  refuse(message: string): void {
    const slot = this.owe();
    // Answered after the caller's bookkeeping for this frame, as any other answer is.
    queueMicrotask(() => this.settle(slot, { failed: message, lost: false, proxyLink: true }));
  }

  /** Resolves once every transaction taken so far is answered. */
  drain(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private owe(): Slot {
    const slot: Slot = {};
    this.slots.push(slot);
    this.inFlight++;
    return slot;
  }

  /** Sends one transaction to the MX; the next waiting one starts once this body is written (or this one is over). */
  private start(slot: Slot, from: string, to: string[], body: Buffer): void {
    this.bodyBusy = true;
    let written = false;
    const bodyDone = (): void => {
      if (written) return;
      written = true;
      const next = this.waitingBody.shift();
      if (next) next();
      else this.bodyBusy = false;
    };
    const mx = this.mx;
    // An earlier transaction lost the session (or a 421 ended it): this one never reached the MX.
    if (!mx || this.retiring || !mx.session.usable) {
      bodyDone();
      queueMicrotask(() => this.settle(slot, { failed: 'the MX session ended before this transaction', lost: false }));
      return;
    }
    mx.transactions++;
    this.hooks.counted();
    // Only a session that pipelines takes the next envelope before this final reply (RFC 2920).
    const onBodySent = mx.session.pipelined ? bodyDone : undefined;
    // Answered before the next waiting transaction starts: the answer is what
    // marks the session lost (or retiring, its IP removed), and the next one
    // must see that rather than go to the MX on the session.
    mx.session.send(from, to, body, { onBodySent }).then(
      (tx) => {
        this.settle(slot, { tx });
        bodyDone();
      },
      (err: Error) => {
        this.settle(slot, { failed: err.message, lost: true });
        bodyDone();
      },
    );
  }

  /** Records a transaction's outcome and sends every answer now due, in order. */
  private settle(slot: Slot, outcome: Outcome): void {
    slot.outcome = outcome;
    while (this.slots.length > 0 && this.slots[0].outcome !== undefined) {
      this.send(this.slots.shift()!.outcome!);
      if (--this.inFlight > 0) continue;
      if (this.retiring && this.mx) {
        this.mx.session.close();
        this.mx = undefined;
      }
      for (const w of this.waiters.splice(0)) w();
      this.hooks.drained();
    }
  }

  private send(o: Outcome): void {
    const mx = this.mx;
    if ('failed' in o) {
      if (o.lost && mx) {
        mx.session.close();
        this.mx = undefined;
      }
      const answer: TransactionFailed = { t: 'transaction_failed', message: o.failed, usable: false, ...(o.proxyLink ? { proxy_link: true as const } : {}) };
      if (this.channel.open) this.channel.send(answer);
      return;
    }
    // A reload removed this sending IP mid-transaction: the transaction
    // finished; the session is told unusable and QUIT (once what is already
    // pipelined behind it is answered), never reused.
    if (mx && !this.hooks.hosted(mx.sendingIp)) this.retiring = true;
    const answer: TransactionReply = { t: 'result', recipients: o.tx.recipients, envelope_ms: o.tx.envelopeMs, data_ms: o.tx.dataMs, usable: this.open && mx!.session.usable };
    try {
      this.channel.send(answer);
    } catch {
      // The MTA is gone and never hears this answer: the session is dropped, as a lost one.
      if (this.mx) {
        this.mx.session.close();
        this.mx = undefined;
      }
    }
  }
}
