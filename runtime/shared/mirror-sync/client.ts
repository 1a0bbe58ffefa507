// The MTA's side of the sync-barrier protocol (protocol.ts): after a spool
// write is durable locally, intake calls `barrier()` and gives its 250 only
// once it resolves. The callers of one turn of the event loop (the messages
// of one spool group commit) share one request, sent at once, alongside
// those still out: each covers what was written before it was sent, and the
// sooner it reaches the mirror the likelier it joins the replication scan
// about to start (the mirror coalesces all barriers that arrived before a
// scan into it). With `coalesce`, the callers that come while a request is
// out wait for its answer and then share the next one: one request out at a
// time, each covering every record written before it was sent. Either way a
// caller is answered only by a request sent after it called, never by one
// already out: that one may be answered by a scan that did not see its record.
//
// A missing or dead mirror daemon, a refusal, or no answer within
// `timeoutMs` rejects (EMIRRORSYNC): the caller must not acknowledge.
import { connect, type Socket } from 'node:net';
import { VolleyError } from '../errors';
import { SYNC_GREETING, SYNC_PROTOCOL_VERSION, barrierLine, lineSplitter, parseSyncLine, type BarrierAnswer } from './protocol';

export interface SyncClientOptions {
  /** The mirror's sync socket. */
  socket: string;
  /** How long one barrier may wait for the mirror's answer; more than the mirror's sync_timeout, so its policy answers first. */
  timeoutMs: number;
  /**
   * One request out at a time, the callers meanwhile gathered into the next
   * (default false): fewer, larger requests, at up to one more round trip for
   * a caller that just missed one. Off by default: measured on the 2-core
   * bench (test/bench/README.md, session 11) it cut requests by a quarter but
   * not replication batches (the mirror already puts every barrier that came
   * before a scan into it), and sync intake fell by about a third.
   */
  coalesce?: boolean;
}

interface Waiter {
  resolve: (state: 'sync' | 'degraded') => void;
  reject: (err: Error) => void;
}

export class MirrorSyncClient {
  private conn?: Promise<Socket>;
  private next = 0;
  private readonly pending = new Map<number, (a: BarrierAnswer | Error) => void>();
  /** Callers not sent yet: as one BARRIER at the next turn, or (coalesce) once the request out is answered. */
  private gathering: Waiter[] = [];
  /** A send of `gathering` is scheduled for the next turn. */
  private scheduled = false;
  /** Requests sent and not answered yet. */
  private outstanding = 0;
  private closed = false;
  /** Barriers answered and failed (the worker's metrics read them). */
  answered = 0;
  failed = 0;

  constructor(private readonly options: SyncClientOptions) {}

  /** Resolves with the mirror's state once everything written before the call is durable on the secondary (or the policy degraded). */
  barrier(): Promise<'sync' | 'degraded'> {
    if (this.closed) return Promise.reject(new VolleyError('EMIRRORSYNC', 'the mirror sync client is closed'));
    return new Promise((resolve, reject) => {
      this.gathering.push({ resolve, reject });
      if (this.scheduled || (this.coalescing && this.outstanding > 0)) return;
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.flush();
      });
    });
  }

  private get coalescing(): boolean {
    return this.options.coalesce === true;
  }

  /** Sends what was gathered as one request. */
  private flush(): void {
    if (this.gathering.length === 0) return;
    const batch = this.gathering;
    this.gathering = [];
    void this.request(batch);
  }

  close(): void {
    this.closed = true;
    // Callers still gathered are never sent now: refused, not left waiting.
    const gathered = this.gathering;
    this.gathering = [];
    for (const w of gathered) w.reject(new VolleyError('EMIRRORSYNC', 'the mirror sync client is closed'));
    void this.conn?.then((s) => s.destroy(), () => undefined);
    this.conn = undefined;
  }

  /** One BARRIER for the whole batch of callers. */
  private async request(batch: Waiter[]): Promise<void> {
    this.outstanding++;
    let outcome: BarrierAnswer | Error;
    try {
      const socket = await this.connection();
      const n = ++this.next;
      outcome = await new Promise<BarrierAnswer | Error>((settle) => {
        const timer = setTimeout(() => {
          this.pending.delete(n);
          settle(new VolleyError('EMIRRORSYNC', `the mirror did not answer a sync barrier within ${this.options.timeoutMs} ms`));
        }, this.options.timeoutMs);
        this.pending.set(n, (a) => {
          clearTimeout(timer);
          this.pending.delete(n);
          settle(a);
        });
        socket.write(barrierLine(n));
      });
    } catch (err) {
      outcome = err as Error;
    }
    this.outstanding--;
    if (outcome instanceof Error || !outcome.ok) {
      const err = outcome instanceof Error ? outcome : new VolleyError('EMIRRORSYNC', `the mirror refused the sync barrier (${outcome.reason}): ${outcome.message}`);
      this.failed += batch.length;
      for (const w of batch) w.reject(err);
    } else {
      this.answered += batch.length;
      for (const w of batch) w.resolve((outcome as { state: 'sync' | 'degraded' }).state);
    }
    // Those who came while this was out: their records were written after it
    // was sent, so its answer does not cover them; they share the next request,
    // whatever this one's outcome (a refusal of this one says nothing of theirs).
    if (this.coalescing && !this.scheduled && this.outstanding === 0 && !this.closed) this.flush();
  }

  /** The open connection, dialled (and greeted) on first use and again after it broke. */
  private connection(): Promise<Socket> {
    this.conn ??= this.dial().catch((err: Error) => {
      this.conn = undefined;
      throw err;
    });
    return this.conn;
  }

  private dial(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = connect(this.options.socket);
      let greeted = false;
      const timer = setTimeout(() => fail(new VolleyError('EMIRRORSYNC', `the mirror's sync socket ${this.options.socket} did not greet within ${this.options.timeoutMs} ms`)), this.options.timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      const feed = lineSplitter((text) => {
        const line = parseSyncLine(text);
        if (!greeted) {
          if (line.t !== 'greeting' || line.version !== SYNC_PROTOCOL_VERSION) throw new VolleyError('EMIRRORSYNC', `the mirror speaks another sync protocol (${text.slice(0, 40)})`);
          greeted = true;
          clearTimeout(timer);
          return resolve(socket);
        }
        if (line.t === 'answer') this.pending.get(line.n)?.(line.answer);
      });
      socket.on('data', (chunk: Buffer) => {
        try {
          feed(chunk);
        } catch (err) {
          socket.destroy(err as Error);
        }
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (greeted) return;
        fail(err instanceof VolleyError ? err : new VolleyError('EMIRRORSYNC', `cannot reach the mirror's sync socket ${this.options.socket}: ${err.code ?? err.message}`));
      });
      socket.on('close', () => {
        // Whatever waits on this connection fails now, not at its timeout; the next barrier dials again.
        if (this.conn && greeted) this.conn = undefined;
        for (const settle of [...this.pending.values()]) settle(new VolleyError('EMIRRORSYNC', 'the connection to the mirror closed before it answered'));
        if (!greeted) fail(new VolleyError('EMIRRORSYNC', `the mirror's sync socket ${this.options.socket} closed before greeting`));
      });
      socket.write(`${SYNC_GREETING}\n`);
    });
  }
}
