// Mail held in its destination queue (by a throttle, a backoff pause or an
// operator): the timer that wakes the engine when the earliest hold ends, the
// sweep that looks once a minute at holds with no end of their own, and the
// expiry of what waited there past its lifetime. Owns those timers; what a
// wake-up does (lift holds, pump) is the engine's, and an expiry is recorded
// through records/ (`fail`).
import type { Clock, TimerHandle } from '../../../shared/clock';
import { expiresAt } from '../../spool/types';
import type { Destination, Destinations } from '../queues/destinations';
import type { Job } from '../records/attempt-recorder';
import { HeldPastLifetime, type DeliveryFailure } from '../records/outcomes';
import type { OperatorHolds } from './operator-holds';

/** How often held mail with no hold end of its own (an operator's pause) is looked at. */
const SWEEP_MS = 60_000;

export class HoldWake {
  private at = Infinity;
  private timer?: TimerHandle;
  private sweep?: TimerHandle;
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly wake: () => void,
  ) {}

  /** Mail held by an operator's pause has no timer of its own; it still expires on time. */
  start(): void {
    this.sweep = this.clock.setInterval(() => this.wake(), SWEEP_MS);
    this.sweep.unref();
  }

  /** A destination is held until `until`: wake no later than then. */
  note(until: number): void {
    this.at = Math.min(this.at, until);
  }

  /** (Re)sets the timer for the earliest hold noted. */
  arm(): void {
    if (this.at === Infinity || this.stopped) return;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.at = Infinity;
      this.wake();
    }, Math.max(10, this.at - this.clock.now()));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    if (this.sweep) this.clock.clearInterval(this.sweep);
  }
}

/** A message waiting behind a throttle or an operator's pause still expires on time. */
export function expireHeld(destinations: Destinations, holds: OperatorHolds, now: number, maxLifetimeMs: number, fail: (job: Job, dest: Destination, failure: DeliveryFailure) => void): void {
  const held = new HeldPastLifetime();
  for (const dest of destinations.held) {
    // A hold that has just ended gives its mail one more try first.
    if (dest.heldUntil <= now && !holds.holds(dest)) continue;
    const keep: Job[] = [];
    for (const job of dest.jobs) {
      if (now > expiresAt(job.attempt.entry, maxLifetimeMs)) fail(job, dest, held);
      else keep.push(job);
    }
    dest.jobs = keep;
  }
}
