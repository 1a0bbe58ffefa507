import { answersSlowly, average, wantsConnection, type Destination } from '../../../../../runtime/mta/delivery/queues/destinations';

function dest(over: Partial<Destination>): Destination {
  return { key: 'k', domain: 'd.test', source: { helo: 'mta.test' }, jobs: [], active: 0, stalled: 0, idle: [], heldUntil: 0, ...over };
}
const jobs = (n: number): Destination['jobs'] => Array.from({ length: n }, () => ({}) as Destination['jobs'][number]);

test('a destination answers slowly only with its final replies held 50 ms or more and over twice a connection set-up', () => {
  expect(answersSlowly(dest({}))).toBe(false); // nothing learnt yet
  expect(answersSlowly(dest({ replyMs: 300, setupMs: 5 }))).toBe(true); // a content scan on a near network
  expect(answersSlowly(dest({ replyMs: 120, setupMs: 400 }))).toBe(false); // a far MX: a new connection costs more round trips than the wait
  expect(answersSlowly(dest({ replyMs: 30, setupMs: 1 }))).toBe(false); // quick enough whatever a connection costs
});

test('stalled connections count as room for queued mail except where the destination answers slowly', () => {
  // Two connections, both with a transaction pipelined behind a held reply, one message queued.
  const fast = dest({ jobs: jobs(1), active: 2, stalled: 2, replyMs: 20, setupMs: 2 });
  expect(wantsConnection(fast)).toBe(false);
  const slow = dest({ jobs: jobs(1), active: 2, stalled: 2, replyMs: 300, setupMs: 2 });
  expect(wantsConnection(slow)).toBe(true);
  // Not stalled: as before, another connection only when more mail waits than there are connections.
  expect(wantsConnection(dest({ jobs: jobs(2), active: 2, replyMs: 300, setupMs: 2 }))).toBe(false);
  expect(wantsConnection(dest({ jobs: jobs(3), active: 2 }))).toBe(true);
});

test('the moving average starts at its first sample and moves a tenth of the way to each next one', () => {
  expect(average(undefined, 300)).toBe(300);
  expect(average(300, 200)).toBe(290);
});
