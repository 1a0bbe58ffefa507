import type { Source } from '../../../shared/smtp/connector';
import type { Job } from '../records/attempt-recorder';

/** A queue per (virtual MTA, destination domain): a slow domain only ever holds its own slots. */
export interface Destination {
  key: string;
  domain: string;
  source: Source & { pool?: string };
  jobs: Job[];
  active: number;
  /**
   * Connections with a transaction pipelined behind one still awaiting its
   * final reply: they take no more work until that reply comes.
   */
  stalled: number;
  /** Moving averages of the final reply's wait after a body, and of a new connection's set-up (connect to ready), in ms. */
  replyMs?: number;
  setupMs?: number;
  /** Connections waiting briefly for more work before they QUIT. */
  idle: ((job: Job | undefined) => void)[];
  /** Held by a throttle or a backoff pause until then (ms since the epoch). */
  heldUntil: number;
  /** Waiting for a connection permit of this throttle key to be released. */
  heldOnKey?: string;
}

/**
 * A destination that answers a body more slowly than a new connection gets
 * ready (a content scan holding each reply): there a message waiting behind
 * a held reply is sooner delivered on a connection of its own. Elsewhere,
 * and on a network where a connection's set-up costs several round trips,
 * the connection it waits on frees up first.
 */
export function answersSlowly(dest: Destination): boolean {
  return dest.replyMs !== undefined && dest.setupMs !== undefined && dest.replyMs >= SLOW_REPLY_MS && dest.replyMs > 2 * dest.setupMs;
}

/** The destinations whose timings are kept once their queues empty. */
const LEARNT_MAX = 10_000;

/** A final reply quicker than this frees its connection soon enough whatever a new one would cost. */
const SLOW_REPLY_MS = 50;

/**
 * Another connection is wanted when more mail waits than the open
 * connections will take next: each takes one more message once its body is
 * out, except, where the destination answers slowly, those stalled behind
 * a final reply.
 */
export function wantsConnection(dest: Destination): boolean {
  return dest.jobs.length > dest.active - (answersSlowly(dest) ? dest.stalled : 0);
}

/** Folds a new sample into a moving average (a tenth of its weight to the sample). */
export function average(current: number | undefined, sample: number): number {
  return current === undefined ? sample : current + (sample - current) / 10;
}

/**
 * Every destination queue, and which ones need looking at. The scheduler's
 * pump walks only the runnable set (queues that want another connection),
 * never all of them: with tens of thousands of domains queued, a walk per
 * finished connection would cost more than the deliveries.
 */
export class Destinations {
  private readonly all = new Map<string, Destination>();
  /** May be able to open a connection: wants one (wantsConnection), not known to be held. */
  readonly runnable = new Set<Destination>();
  /** Held by a throttle, a backoff pause or an operator: looked at again when that ends. */
  readonly held = new Set<Destination>();
  /** The timings learnt of destinations whose queues emptied, for when mail comes again (the latest 10,000). */
  private readonly learnt = new Map<string, Pick<Destination, 'replyMs' | 'setupMs'>>();

  values(): IterableIterator<Destination> {
    return this.all.values();
  }

  /** Gives the job to a connection waiting for work, or queues it. */
  push(key: string, domain: string, source: Destination['source'], job: Job): void {
    let dest = this.all.get(key);
    if (!dest) {
      dest = { key, domain, source, jobs: [], active: 0, stalled: 0, idle: [], heldUntil: 0, ...this.learnt.get(key) };
      this.all.set(key, dest);
    }
    const waiter = dest.idle.shift();
    if (waiter) return waiter(job);
    dest.jobs.push(job);
    this.runnable.add(dest);
  }

  /** Its state changed (a connection ended, a hold was lifted): look at it again. */
  touch(dest: Destination): void {
    if (dest.jobs.length === 0 && dest.active === 0 && dest.idle.length === 0) {
      this.remove(dest);
      return;
    }
    this.held.delete(dest);
    if (wantsConnection(dest)) this.runnable.add(dest);
  }

  hold(dest: Destination): void {
    this.runnable.delete(dest);
    this.held.add(dest);
  }

  /** Moves the holds that have ended back into the runnable set. */
  release(now: number): void {
    for (const dest of this.held) if (dest.heldUntil <= now) this.touch(dest);
  }

  remove(dest: Destination): void {
    if (dest.replyMs !== undefined || dest.setupMs !== undefined) {
      this.learnt.delete(dest.key); // re-inserted last: the oldest go first
      this.learnt.set(dest.key, { replyMs: dest.replyMs, setupMs: dest.setupMs });
      if (this.learnt.size > LEARNT_MAX) this.learnt.delete(this.learnt.keys().next().value!);
    }
    if (this.all.get(dest.key) === dest) this.all.delete(dest.key);
    this.runnable.delete(dest);
    this.held.delete(dest);
  }
}
