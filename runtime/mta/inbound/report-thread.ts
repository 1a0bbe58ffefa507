// Parses inbound reports in a worker thread that can be stopped. A parse
// given up at its deadline (or whose session closed) is stopped by
// terminating the thread: its work ends at once, even inside a long
// synchronous step, and its heap (the report, mailparser's copies of it)
// goes with it. Left running in the primary, a crafted report went on parsing
// and holding that memory after its deadline, one more for every such report
// sent (RFC 2231 continuations in one part header: ~10 s of CPU per 650 KB,
// blocking the primary's event loop meanwhile). The thread is kept between
// reports and started again, lazily, only after one is stopped.
//
// The thread runs the bundle itself (dist/volley.js), which sees its
// workerData and serves parses (report-thread-main.ts) instead of the CLI.

import { Worker } from 'node:worker_threads';
import { systemClock, type Clock, type TimerHandle } from '../../shared/clock';
import { VolleyError } from '../../shared/errors';
import { FieldGroup } from './fields';
import type { ParsedReport, ReportLimits } from './report';

/** What the bundle looks for in its workerData to serve parses instead of the CLI. */
export const REPORT_THREAD = 'volley-inbound-report-parser';

export interface ThreadRequest {
  raw: Uint8Array;
  limits: ReportLimits;
}

/** A report's `original` field group crosses as plain entries: a class instance would arrive without its methods. */
export type ThreadReply = { kind: 'started' } | { kind: 'done'; report: Omit<ParsedReport, 'original'>; original?: [string, string[]][] } | { kind: 'failed'; message: string };

export type SpawnThread = (script: string, workerData: unknown) => Worker;

/**
 * The thread's heap is bounded: mailparser holds a report several times over
 * (a 10 MB report: well under 100 MB), and a crafted one that grows past this
 * ends its own thread (out of memory, answered 451, kept the second time)
 * instead of the MTA's memory.
 */
const THREAD_HEAP_MB = 512;

const spawnWorker: SpawnThread = (script, workerData) => new Worker(script, { workerData, resourceLimits: { maxOldGenerationSizeMb: THREAD_HEAP_MB } });

/**
 * A thread left idle this long is ended: it holds ~65 MB (a V8 heap and the
 * bundle) for reports that come a few a minute at most; the next report
 * starts another (~0.5 s, well inside a sender's DATA timeout).
 */
export const THREAD_IDLE_MS = 5 * 60_000;

export class ReportThread {
  private worker?: Worker;
  private busy = false;
  private started = false;
  private idle?: TimerHandle;

  /** `script` is the bundle (dist/volley.js) the thread runs. */
  constructor(
    private readonly script: string,
    private readonly spawn: SpawnThread = spawnWorker,
    private readonly clock: Clock = systemClock,
    private readonly idleMs = THREAD_IDLE_MS,
  ) {}

  /** True once the thread has begun parsing the report it was given (for tests that stop a parse mid-way). */
  get parsing(): boolean {
    return this.busy && this.started;
  }

  /**
   * One report at a time (the listener's parse queue runs one). When `signal`
   * aborts, the thread is terminated and the promise rejects with the
   * signal's reason; the next parse starts a new thread.
   */
  parse(raw: Buffer, limits: ReportLimits, signal: AbortSignal): Promise<ParsedReport> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.busy) return Promise.reject(new VolleyError('parse-busy', 'the report thread is already parsing a report'));
    this.clock.clearTimeout(this.idle);
    this.idle = undefined;
    const worker = (this.worker ??= this.start());
    this.busy = true;
    this.started = false;
    return new Promise<ParsedReport>((resolve, reject) => {
      const settle = (): void => {
        this.busy = false;
        this.started = false;
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        signal.removeEventListener('abort', onAbort);
      };
      const onMessage = (m: ThreadReply): void => {
        if (m.kind === 'started') {
          this.started = true;
          return;
        }
        settle();
        this.idleFrom(worker);
        if (m.kind === 'failed') reject(new VolleyError('parse-failed', m.message));
        else resolve({ ...m.report, original: m.original && FieldGroup.fromEntries(m.original) } as ParsedReport);
      };
      const onError = (err: Error): void => {
        settle();
        this.stop(worker);
        reject(new VolleyError('parse-thread-failed', `the report thread failed: ${err.message}`, { cause: err }));
      };
      const onExit = (code: number): void => {
        settle();
        this.forget(worker);
        reject(new VolleyError('parse-thread-failed', `the report thread exited (code ${code}) before answering`));
      };
      const onAbort = (): void => {
        settle();
        this.stop(worker);
        reject(signal.reason);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      signal.addEventListener('abort', onAbort, { once: true });
      // One copy the thread owns (transferred, not copied again); the caller keeps `raw` for unmatched/.
      const copy = new Uint8Array(raw);
      worker.postMessage({ raw: copy, limits } satisfies ThreadRequest, [copy.buffer]);
    });
  }

  /** Ends `worker` if no parse starts within idleMs. */
  private idleFrom(worker: Worker): void {
    this.clock.clearTimeout(this.idle);
    this.idle = this.clock.setTimeout(() => {
      this.idle = undefined;
      if (this.worker === worker && !this.busy) this.stop(worker);
    }, this.idleMs);
    this.idle.unref?.();
  }

  /** Terminates the thread (the listener closing). */
  async close(): Promise<void> {
    this.clock.clearTimeout(this.idle);
    this.idle = undefined;
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private start(): Worker {
    const worker = this.spawn(this.script, { volley: REPORT_THREAD });
    // An idle thread must not keep the process alive; a parse in flight is held by its SMTP session.
    worker.unref();
    // Outside a parse there is no one to tell: the next parse starts another.
    worker.on('error', () => this.forget(worker));
    worker.on('exit', () => this.forget(worker));
    return worker;
  }

  private stop(worker: Worker): void {
    this.forget(worker);
    void worker.terminate();
  }

  private forget(worker: Worker): void {
    if (this.worker === worker) this.worker = undefined;
  }
}
