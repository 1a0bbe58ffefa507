// Held mail: the wake-up comes when the earliest hold ends (on jest's clock,
// never sleeping), not before and not after a stop; what waited past its
// lifetime behind a hold is failed, what did not stays.
import { systemClock } from '../../../../../runtime/shared/clock';
import { HoldWake, expireHeld } from '../../../../../runtime/mta/delivery/scheduler/held-mail';
import { OperatorHolds } from '../../../../../runtime/mta/delivery/scheduler/operator-holds';
import { Destinations, type Destination } from '../../../../../runtime/mta/delivery/queues/destinations';
import type { Job } from '../../../../../runtime/mta/delivery/records/attempt-recorder';
import type { SpoolPartition } from '../../../../../runtime/mta/spool/partition';
import { useFakeTime } from '../../../../helpers/fake-time';

useFakeTime();

test('wakes at the earliest hold noted, once, and never after stop', () => {
  let woken = 0;
  const w = new HoldWake(systemClock, () => woken++);
  const now = Date.now();
  w.note(now + 5000);
  w.note(now + 2000);
  w.arm();
  jest.advanceTimersByTime(1999);
  expect(woken).toBe(0);
  jest.advanceTimersByTime(1);
  expect(woken).toBe(1);
  jest.advanceTimersByTime(10_000);
  expect(woken).toBe(1); // noted times are spent once woken
  w.note(Date.now() + 100);
  w.arm();
  w.stop();
  jest.advanceTimersByTime(1000);
  expect(woken).toBe(1);
});

test('the minute sweep wakes the engine for holds with no end of their own', () => {
  let woken = 0;
  const w = new HoldWake(systemClock, () => woken++);
  w.start();
  jest.advanceTimersByTime(120_000);
  expect(woken).toBe(2);
  w.stop();
  jest.advanceTimersByTime(120_000);
  expect(woken).toBe(2);
});

function job(id: string, received: number): Job {
  const entry = { id, owner: { dir: '/x' }, segment: 0, offset: 0, length: 0, from: 'a@x.test', to: [`${id}@d.test`], received, next: 0, attempts: 0, size: 1 };
  return { attempt: { entry, partition: {} as SpoolPartition, pending: 1, finished: [], deferred: [], events: [] }, domain: 'd.test', rcpts: [`${id}@d.test`] };
}

test('expireHeld fails only what waited past its lifetime behind a hold that has not ended', () => {
  const now = Date.now();
  const destinations = new Destinations();
  const holds = new OperatorHolds();
  const source = { vmta: 'v', helo: 'h' };
  destinations.push('v|d.test', 'd.test', source, job('old', now - 10_000));
  destinations.push('v|d.test', 'd.test', source, job('new', now));
  destinations.push('v|e.test', 'e.test', source, { ...job('ended', now - 10_000), domain: 'e.test' });
  const [d, e] = [...destinations.values()];
  d.heldUntil = now + 60_000;
  e.heldUntil = now - 1; // its hold has just ended: one more try first
  destinations.hold(d);
  destinations.hold(e);
  const failed: string[] = [];
  expireHeld(destinations, holds, now, 5000, (j: Job, _dest: Destination, failure) => failed.push(`${j.attempt.entry.id}:${failure.errorKind}`));
  expect(failed).toEqual(['old:throttled']);
  expect(d.jobs.map((j) => j.attempt.entry.id)).toEqual(['new']);
  expect(e.jobs).toHaveLength(1);
});
