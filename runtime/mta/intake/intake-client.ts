import type { TransferListItem } from 'node:worker_threads';
import type { SubmitAnswer, ToQueue, WireSubmission } from '../ipc';
import { IntakeError, type IntakePort, type RejectReason, type Submission } from './intake';

/**
 * A received header and the message as one Buffer that owns its memory (not
 * a slice of Node's shared pool), so that it can move to the queue thread.
 */
export function withHeader(header: string, message: Buffer): Buffer {
  const size = Buffer.byteLength(header, 'latin1');
  const out = Buffer.allocUnsafeSlow(size + message.length);
  out.write(header, 0, 'latin1');
  message.copy(out, size);
  return out;
}

/**
 * Intake as the listeners see it when the spool lives in the queue thread:
 * each submission crosses the port and its promise settles on the queue
 * thread's answer, so a 250 still means durable. Submissions of one
 * event-loop turn go as one batch; a body's memory moves rather than being
 * copied where the Buffer owns all of it.
 */
export class IntakeClient implements IntakePort {
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: { id: string }) => void; reject: (err: Error) => void }>();
  private batch: { seq: number; sub: WireSubmission }[] = [];
  private transfer: TransferListItem[] = [];
  private closed?: Error;

  constructor(private readonly post: (m: ToQueue, transfer?: TransferListItem[]) => void) {}

  submit(sub: Submission): Promise<{ id: string }> {
    if (this.closed) return Promise.reject(this.closed);
    const seq = ++this.seq;
    const body = sub.message;
    // A Buffer from Node's pool shares its ArrayBuffer with others: that one is copied.
    if (body.byteOffset === 0 && body.byteLength === body.buffer.byteLength) this.transfer.push(body.buffer as ArrayBuffer);
    if (this.batch.length === 0) setImmediate(() => this.flush());
    this.batch.push({ seq, sub });
    return new Promise((resolve, reject) => this.pending.set(seq, { resolve, reject }));
  }

  /** Settles submissions from the queue thread's answers. */
  onAnswers(answers: SubmitAnswer[]): void {
    for (const a of answers) {
      const p = this.pending.get(a.seq);
      if (!p) continue;
      this.pending.delete(a.seq);
      if ('id' in a) p.resolve({ id: a.id });
      else if ('refusal' in a) {
        const r = a.refusal;
        p.reject(new IntakeError(r.reason as RejectReason, r.smtpCode, r.enhanced, r.httpStatus, r.message));
      } else p.reject(new Error(a.error));
    }
  }

  /**
   * The queue thread is gone. A pending submission may or may not have been
   * written, but it was not acknowledged: it fails (a temporary error to the
   * client), which at worst makes a duplicate and never a loss.
   */
  close(err: Error): void {
    this.closed = err;
    this.batch = [];
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  private flush(): void {
    if (this.closed || this.batch.length === 0) return;
    const batch = this.batch;
    const transfer = this.transfer;
    this.batch = [];
    this.transfer = [];
    this.post({ type: 'submit', batch }, transfer.length > 0 ? transfer : undefined);
  }
}
