// The MTA's side of the sync-barrier protocol (protocol.ts): after a spool
// write is durable locally, intake calls `barrier()` and gives its 250 only
// once it resolves. The callers of one turn of the event loop (the messages
// of one spool group commit) share one request. Requests do not wait for one
// another: each covers what was written before it was sent, and the sooner it
// reaches the mirror the likelier it joins the replication scan about to
// start (the mirror coalesces all barriers that arrived before a scan into
// it), so a group commit on the primary costs one replication batch.
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
}

interface Waiter {
  resolve: (state: 'sync' | 'degraded') => void;
  reject: (err: Error) => void;
}

export class MirrorSyncClient {
  private conn?: Promise<Socket>;
  private next = 0;
  private readonly pending = new Map<number, (a: BarrierAnswer | Error) => void>();
  /** Callers of this turn, sent as one BARRIER at the next. */
  private gathering: Waiter[] = [];
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
      if (this.gathering.length > 1) return;
      setImmediate(() => {
        const batch = this.gathering;
        this.gathering = [];
        void this.request(batch);
      });
    });
  }

  close(): void {
    this.closed = true;
    void this.conn?.then((s) => s.destroy(), () => undefined);
    this.conn = undefined;
  }

  /** One BARRIER for the whole batch of callers. */
  private async request(batch: Waiter[]): Promise<void> {
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
    if (outcome instanceof Error || !outcome.ok) {
      const err = outcome instanceof Error ? outcome : new VolleyError('EMIRRORSYNC', `the mirror refused the sync barrier (${outcome.reason}): ${outcome.message}`);
      this.failed += batch.length;
      for (const w of batch) w.reject(err);
      return;
    }
    this.answered += batch.length;
    for (const w of batch) w.resolve((outcome as { state: 'sync' | 'degraded' }).state);
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
