import type { Source } from '../../shared/smtp/connector';
import type { Job } from './attempt-recorder';

/** A queue per (virtual MTA, destination domain): a slow domain only ever holds its own slots. */
export interface Destination {
  key: string;
  domain: string;
  source: Source & { pool?: string };
  jobs: Job[];
  active: number;
  /**
   * Connections with a transaction pipelined behind one still awaiting its
   * final reply: they take no more work until that reply comes, so at a
   * slow MX (a reply held for a content scan) they do not count as room for
   * the queued mail.
   */
  stalled: number;
  /** Connections waiting briefly for more work before they QUIT. */
  idle: ((job: Job | undefined) => void)[];
  /** Held by a throttle or a backoff pause until then (ms since the epoch). */
  heldUntil: number;
  /** Waiting for a connection permit of this throttle key to be released. */
  heldOnKey?: string;
}

/**
 * Another connection is wanted when more mail waits than the open
 * connections will take next: each takes one more message once its body is
 * out, except those stalled behind a final reply.
 */
export function wantsConnection(dest: Destination): boolean {
  return dest.jobs.length > dest.active - dest.stalled;
}

/**
 * Every destination queue, and which ones need looking at. The scheduler's
 * pump walks only the runnable set (queues with more jobs than connections),
 * never all of them: with tens of thousands of domains queued, a walk per
 * finished connection would cost more than the deliveries.
 */
export class Destinations {
  private readonly all = new Map<string, Destination>();
  /** May be able to open a connection: more jobs than connections, not known to be held. */
  readonly runnable = new Set<Destination>();
  /** Held by a throttle, a backoff pause or an operator: looked at again when that ends. */
  readonly held = new Set<Destination>();

  values(): IterableIterator<Destination> {
    return this.all.values();
  }

  /** Gives the job to a connection waiting for work, or queues it. */
  push(key: string, domain: string, source: Destination['source'], job: Job): void {
    let dest = this.all.get(key);
    if (!dest) {
      dest = { key, domain, source, jobs: [], active: 0, stalled: 0, idle: [], heldUntil: 0 };
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
    if (this.all.get(dest.key) === dest) this.all.delete(dest.key);
    this.runnable.delete(dest);
    this.held.delete(dest);
  }
}
