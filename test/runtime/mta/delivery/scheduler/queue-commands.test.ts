// An operator's queue commands (scheduler/queue-commands.ts) over fakes: a
// partition's index, a recorder whose writes fail, the real in-flight set and
// destination queues, so what a failed purge leaves behind is what the test sees.
import type { VolleyConfig } from '../../../../../runtime/shared/config/types';
import type { SpoolPartition } from '../../../../../runtime/mta/spool/partition';
import type { SpoolEntry } from '../../../../../runtime/mta/spool/types';
import { Destinations } from '../../../../../runtime/mta/delivery/queues/destinations';
import type { Attempt, AttemptRecorder } from '../../../../../runtime/mta/delivery/records/attempt-recorder';
import { InFlight } from '../../../../../runtime/mta/delivery/records/in-flight';
import type { OperatorHolds } from '../../../../../runtime/mta/delivery/scheduler/operator-holds';
import type { Parking } from '../../../../../runtime/mta/delivery/scheduler/parking';
import type { RetryTimer } from '../../../../../runtime/mta/delivery/scheduler/retry-timer';
import { QueueCommands } from '../../../../../runtime/mta/delivery/scheduler/queue-commands';
import { VolleyError } from '../../../../../runtime/shared/errors';

const NEXT = 5_000;

test('a purge whose attempt log is out of room leaves nothing in flight: the messages it took out of their destination queue wait for their retry again', async () => {
  const entry = { id: 'm1', from: 'a@shop.test', to: ['r@gone.test'], received: 0, next: NEXT, attempts: 0, vmta: 'v' } as unknown as SpoolEntry;
  const index = new Map([[entry.id, entry]]);
  const partition = { entries: () => index.values(), get: (id: string) => index.get(id) } as unknown as SpoolPartition;
  // Queued behind a throttle: in flight, nothing of it on the wire.
  const inflight = new InFlight();
  inflight.add(entry.id);
  const destinations = new Destinations();
  const attempt = { entry, partition, pending: 1, finished: [], deferred: [], events: [] } as unknown as Attempt;
  destinations.push('v|gone.test', 'gone.test', { ip: '127.0.0.1', helo: 'v.test' }, { attempt, domain: 'gone.test', rcpts: entry.to });
  const diskFull = new VolleyError('ENOSPC', 'attempt log: no space left');
  const retried: [number, SpoolEntry][] = [];
  const kick = jest.fn();
  const commands = new QueueCommands({
    partitions: [partition],
    destinations,
    inflight,
    holds: {} as OperatorHolds,
    parking: {} as Parking,
    retries: { push: (at: number, e: SpoolEntry) => retried.push([at, e]) } as unknown as RetryTimer,
    recorder: { purged: () => Promise.reject(diskFull) } as unknown as AttemptRecorder,
    now: () => 0,
    config: () => ({}) as VolleyConfig,
    paused: () => false,
    held: () => false,
    kick,
  });
  await expect(commands.purge({ domain: 'gone.test' })).rejects.toBe(diskFull);
  expect(inflight.size).toBe(0); // a stop's wait for in-flight work ends
  expect(retried).toEqual([[NEXT, entry]]);
  expect(kick).toHaveBeenCalled();
  expect([...destinations.values()]).toEqual([]);
});
