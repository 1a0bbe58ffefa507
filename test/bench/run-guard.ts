// Keeps every bench run from waiting for good: a deadline computed from the
// run's message count, and a watch on the MTA's attempt log that fails the run
// at the first message it did not deliver. A bench whose mail is deferred
// cannot finish (the retry is an hour away), so it says so at once, with the
// reason and the counts, instead of waiting for a sink that will not get it.
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { VolleyError } from '../../runtime/shared/errors';
import type { MtaProcess } from '../helpers/mta-process';
import { registerExitCleanup } from '../helpers/postfix-tools';

/**
 * How long a run of `messages` may take: a minute of set-up and slack, plus
 * the messages at `minMsgsPerSec`. The default, 100 msg/s, is a fifth of the
 * slowest setup the bench times (Postfix relaying, 470 msg/s on a machine so
 * busy the load tools ran at 40 % of their usual rate): generous enough that
 * a slow machine never hits it, and still an end to a run that has stopped.
 */
export function runDeadlineMs(messages: number, minMsgsPerSec = 100): number {
  if (!(messages >= 0) || !(minMsgsPerSec > 0)) throw new VolleyError('BENCH_BAD_LOAD', `a run needs a message count ≥ 0 and a rate > 0: ${messages}, ${minMsgsPerSec}`);
  return 60_000 + Math.ceil((messages * 1000) / minMsgsPerSec);
}

export type AttemptStatus = 'delivered' | 'deferred' | 'failed' | 'expired';

/**
 * Counts the attempt log's lines as the MTA appends them, reading only what
 * is new since the last look (a whole-log reread every second would cost a
 * bench run tens of megabytes of parsing). Files are followed by inode, so a
 * rotation (`<name>.current.jsonl` renamed to `<name>.<time>.jsonl`) is not
 * counted twice. Only lines that are not a delivery are parsed: they are few,
 * and each says why.
 */
export class AttemptWatch {
  readonly counts: Record<AttemptStatus, number> = { delivered: 0, deferred: 0, failed: 0, expired: 0 };
  /** Why mail was not delivered: "deferred closed-before-greeting: <reply>" -> how many. */
  readonly reasons = new Map<string, number>();
  private readonly offsets = new Map<number, { offset: number; rest: string }>();

  constructor(private readonly dirs: string[]) {}

  /** Reads what the MTA has appended since the last call. */
  poll(): void {
    for (const dir of this.dirs) {
      if (!existsSync(dir)) continue;
      for (const name of readdirSync(dir).sort()) if (name.endsWith('.jsonl')) this.readNew(join(dir, name));
    }
  }

  /** Messages not delivered so far (deferred, failed or expired). */
  undelivered(): number {
    return this.counts.deferred + this.counts.failed + this.counts.expired;
  }

  /** The counts and the reasons, for a report. */
  summary(): string {
    const c = this.counts;
    const reasons = [...this.reasons].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([r, n]) => `${n} × ${r}`);
    return `attempt log: ${c.delivered} delivered, ${c.deferred} deferred, ${c.failed} failed, ${c.expired} expired${reasons.length ? ` (${reasons.join('; ')})` : ''}`;
  }

  private readNew(file: string): void {
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (err) {
      // Rotated away between the listing and the open: read under its new name next time.
      if ((err as { code?: string }).code === 'ENOENT') return;
      throw err;
    }
    try {
      const ino = fstatSync(fd).ino;
      const seen = this.offsets.get(ino) ?? { offset: 0, rest: '' };
      this.offsets.set(ino, seen);
      const buf = Buffer.alloc(1 << 20);
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, seen.offset);
        if (n <= 0) break;
        seen.offset += n;
        const text = seen.rest + buf.toString('utf8', 0, n);
        const end = text.lastIndexOf('\n');
        // A last line without its newline is still being written: kept for the next read.
        seen.rest = text.slice(end + 1);
        if (end >= 0) this.countLines(text.slice(0, end));
      }
    } finally {
      closeSync(fd);
    }
  }

  private countLines(text: string): void {
    for (const line of text.split('\n')) {
      if (!line) continue;
      if (line.includes('"status":"delivered"')) {
        this.counts.delivered++;
        continue;
      }
      const e = JSON.parse(line) as { status?: string; error_kind?: string; smtp_code?: number; smtp_text?: string };
      const status = e.status as AttemptStatus;
      if (!(status in this.counts)) continue;
      this.counts[status]++;
      if (status === 'delivered') continue;
      const reason = `${status} ${e.error_kind ?? e.smtp_code ?? ''}: ${e.smtp_text ?? ''}`.slice(0, 200);
      this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + 1);
    }
  }
}

export interface GuardOptions {
  /** From runDeadlineMs: the run fails once this has passed. */
  deadlineMs: number;
  /** The run's message count, for the report. */
  messages: number;
  /** Fails the run at the first message the MTA did not deliver. */
  watch?: AttemptWatch;
  /** Where the run stands (e.g. "the sink has 28,000 of 30,000"), for the report. */
  progress: () => string;
  /** How often the attempt log is read (default 1 s). */
  pollMs?: number;
}

/**
 * Resolves with `work`, or rejects with a VolleyError saying what stopped
 * `what`: its deadline (BENCH_DEADLINE) or mail the MTA did not deliver
 * (BENCH_UNDELIVERED). The abandoned work's own later failure is swallowed:
 * the guard has already reported the run.
 */
export function guard<T>(what: string, work: Promise<T>, options: GuardOptions): Promise<T> {
  const started = Date.now();
  return new Promise<T>((resolve, reject) => {
    let over = false;
    const finish = (): void => {
      over = true;
      clearTimeout(deadline);
      clearInterval(poller);
    };
    const fail = (err: VolleyError): void => {
      if (over) return;
      finish();
      work.catch(() => undefined);
      reject(err);
    };
    const check = (): void => {
      if (!options.watch) return;
      try {
        options.watch.poll();
      } catch (err) {
        fail(new VolleyError('BENCH_ATTEMPT_LOG', `${what}: the attempt log cannot be read: ${(err as Error).message}`, { cause: err }));
        return;
      }
      if (options.watch.undelivered() > 0) {
        fail(new VolleyError('BENCH_UNDELIVERED', `${what}: the MTA did not deliver every message, so this run cannot finish (a deferral retries in an hour); after ${seconds(Date.now() - started)} s, ${options.progress()}; ${options.watch.summary()}`));
      }
    };
    const deadline = setTimeout(() => {
      check();
      fail(new VolleyError('BENCH_DEADLINE', `${what}: deadline hit: ${options.messages} messages were given ${seconds(options.deadlineMs)} s; ${options.progress()}${options.watch ? `; ${options.watch.summary()}` : ''}`));
    }, options.deadlineMs);
    const poller = setInterval(check, options.pollMs ?? 1000);
    work.then(
      (value) => {
        if (over) return;
        check(); // the last lines, in case one says the run was not what it looked like
        if (over) return;
        finish();
        resolve(value);
      },
      (err: unknown) => {
        if (over) return;
        finish();
        reject(err);
      },
    );
  });
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(0);
}

/**
 * Makes sure an MTA the bench started ends with the bench: its process group
 * is killed if the bench exits first (a failed run exits mid-way, and the MTA
 * runs detached). Returns the stop to call when the run is over, which waits
 * at most `withinMs` for a clean exit before killing the group: a stop that
 * hangs must not hang the bench.
 */
export function ownMta(mta: MtaProcess, withinMs = 30_000): () => Promise<void> {
  const kill = (): void => {
    try {
      process.kill(-mta.proc.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const unregister = registerExitCleanup(kill);
  return async () => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), withinMs)));
    const stopped = await Promise.race([mta.stop().then(() => 'stopped' as const), late]);
    clearTimeout(timer);
    if (stopped === 'late') {
      process.stderr.write(`bench: the MTA did not stop within ${seconds(withinMs)} s of SIGTERM; killed\n`);
      await mta.crash();
    }
    unregister();
  };
}

/**
 * How a bench runner on its own (`npm run bench:events`, `:workers`,
 * `:mirror`, `:e2e`) ends: exit 0 after `main`, or `BENCH_PARTIAL {json}`
 * of what it had, a `FAILED at <stage>` line and exit 1.
 */
export function runStandalone(main: () => Promise<void>, partial: Record<string, unknown>, stage: () => string): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      const e = err as { code?: string; message?: string; stack?: string };
      process.stdout.write(`BENCH_PARTIAL ${JSON.stringify(partial)}\n`);
      process.stdout.write(`FAILED at ${stage()}: ${e.code ? `[${e.code}] ` : ''}${e.message ?? String(err)}\n`);
      process.stderr.write(`bench failed: ${e.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
