// Runs at most `limit` report parses at once; the others wait their turn in
// arrival order. Their SMTP sessions simply wait for the answer to DATA, as
// they already do for the durable write. A task past its deadline frees its
// slot (a parse that never settles must not stall every later report) and
// is told to stop through its signal (given up but left running, it would
// keep its report and its parser's memory, one more for each such report);
// a waiting task whose caller aborts leaves the queue at once (its report is
// not held in memory for a sender that has gone).

import { systemClock, type Clock, type TimerHandle } from '../../shared/clock';
import { VolleyError } from '../../shared/errors';

export interface RunOptions {
  /** Past this the task's promise rejects (code `parse-timeout`), the task's signal aborts and the next one starts; a late result is ignored. */
  deadlineMs?: number;
  /** Aborted while still waiting: the task never runs, its promise rejects (code `parse-dropped`). */
  signal?: AbortSignal;
}

export class ParseQueue {
  private running = 0;
  private readonly queue: (() => void)[] = [];

  constructor(
    private readonly limit: number,
    /** Told when a report starts or stops waiting (+1 / -1): the waiting gauge. */
    private readonly onWaiting: (delta: number) => void = () => undefined,
    private readonly clock: Clock = systemClock,
  ) {}

  /** `fn` is given a signal that aborts (its reason the `parse-timeout` error) when the deadline passes: it must then stop and let go of its input. */
  async run<T>(fn: (deadline: AbortSignal) => Promise<T>, options: RunOptions = {}): Promise<T> {
    await this.turn(options.signal);
    let timer: TimerHandle | undefined;
    const deadline = new AbortController();
    try {
      const work = fn(deadline.signal);
      if (options.deadlineMs === undefined) return await work;
      const ms = options.deadlineMs;
      // race() keeps a handler on `work`: its late result or rejection goes nowhere.
      return await Promise.race([
        work,
        new Promise<never>((_, reject) => {
          timer = this.clock.setTimeout(() => {
            const late = new VolleyError('parse-timeout', `not parsed within ${ms} ms`);
            reject(late);
            deadline.abort(late);
          }, ms);
        }),
      ]);
    } finally {
      this.clock.clearTimeout(timer);
      this.release();
    }
  }

  get waiting(): number {
    return this.queue.length;
  }

  /** Resolves holding a slot; rejects (holding none) if `signal` aborts first. */
  private turn(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(dropped());
    if (this.running < this.limit) {
      this.running++;
      return Promise.resolve();
    }
    this.onWaiting(1);
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.queue.indexOf(start);
        if (i < 0) return;
        this.queue.splice(i, 1);
        this.onWaiting(-1);
        reject(dropped());
      };
      // The slot is handed over by the one that finishes (running is not decremented in between).
      const start = (): void => {
        signal?.removeEventListener('abort', onAbort);
        this.onWaiting(-1);
        resolve();
      };
      this.queue.push(start);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private release(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.running--;
  }
}

function dropped(): VolleyError {
  return new VolleyError('parse-dropped', 'the session closed before its report was parsed');
}
