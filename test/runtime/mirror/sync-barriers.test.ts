// The primary's sync barriers with jest's fake timers: barriers that arrive
// before a replication scan starts share it (one batch for many group
// commits), those arriving during a scan wait for the next one, and the
// sync_timeout policies: block fails the barrier, degrade records the
// secondary as outdated first and then answers everything at once until it
// has caught up.
import { SyncBarriers } from '../../../runtime/mirror/sync-barriers';
import type { BarrierAnswer } from '../../../runtime/shared/mirror-sync/protocol';

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

function barriers(policy: 'block' | 'degrade', extra: { primary?: () => boolean; onDegrade?: () => void } = {}) {
  const kicks: number[] = [];
  const degraded: number[] = [];
  const b = new SyncBarriers({
    timeoutMs: 1000,
    policy,
    primary: extra.primary ?? (() => true),
    kick: () => kicks.push(1),
    onDegrade: (ms) => {
      extra.onDegrade?.();
      degraded.push(ms);
    },
    now: () => Date.now(),
  });
  return { b, kicks, degraded };
}

/** Tracks a barrier's answer as it comes. */
function ask(b: SyncBarriers): { answer?: BarrierAnswer } {
  const box: { answer?: BarrierAnswer } = {};
  void b.request().then((a) => (box.answer = a));
  return box;
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

test('barriers that arrive before a scan starts share it; one arriving during the scan waits for the next', async () => {
  const { b, kicks } = barriers('block');
  const early = [ask(b), ask(b), ask(b)];
  expect(kicks).toHaveLength(3); // each asks for a scan now (no poll wait)
  const scan1 = b.scanStarted();
  const late = ask(b); // the MTA wrote more after scan 1 began: scan 1 may not have seen it
  jest.advanceTimersByTime(20);
  b.durable(scan1);
  await flush();
  expect(early.map((e) => e.answer)).toEqual(Array(3).fill({ ok: true, state: 'sync' }));
  expect(late.answer).toBeUndefined();
  expect(b.lastLatencyMs).toBe(20);
  const scan2 = b.scanStarted();
  b.durable(scan2);
  await flush();
  expect(late.answer).toEqual({ ok: true, state: 'sync' });
  expect(b.stats()).toMatchObject({ state: 'sync', answered: 4, waiting: 0, timeouts: 0 });
});

test('block: no durable ack within sync_timeout fails the barrier (the MTA answers 451); the next ack is back in sync', async () => {
  const { b, degraded } = barriers('block');
  const first = ask(b);
  b.scanStarted(); // a scan begins but its batch is never acknowledged (the link is cut)
  jest.advanceTimersByTime(999);
  await flush();
  expect(first.answer).toBeUndefined();
  jest.advanceTimersByTime(1);
  await flush();
  expect(first.answer).toMatchObject({ ok: false, reason: 'timeout' });
  expect(b.state).toBe('blocked');
  expect(degraded).toEqual([]);
  const next = ask(b);
  b.durable(b.scanStarted());
  await flush();
  expect(next.answer).toEqual({ ok: true, state: 'sync' });
  expect(b.stats()).toMatchObject({ state: 'sync', timeouts: 1 });
});

test('degrade: the outdated flag is recorded first, then every waiting barrier and every later one is answered at once, until the secondary caught up', async () => {
  const order: string[] = [];
  const { b, degraded } = barriers('degrade', { onDegrade: () => order.push('recorded') });
  const one = ask(b);
  jest.advanceTimersByTime(500);
  const two = ask(b);
  void b.request().then(() => order.push('answered'));
  jest.advanceTimersByTime(500);
  await flush();
  expect(degraded).toEqual([1000]);
  expect(order[0]).toBe('recorded');
  expect(one.answer).toEqual({ ok: true, state: 'degraded' });
  expect(two.answer).toEqual({ ok: true, state: 'degraded' });
  expect(b.state).toBe('degraded');
  const later = ask(b);
  await flush();
  expect(later.answer).toEqual({ ok: true, state: 'degraded' }); // async now: no wait
  b.caughtUp();
  expect(b.state).toBe('sync');
  const synced = ask(b);
  await flush();
  expect(synced.answer).toBeUndefined(); // waits for the secondary again
  b.durable(b.scanStarted());
  await flush();
  expect(synced.answer).toEqual({ ok: true, state: 'sync' });
  expect(degraded).toHaveLength(1);
});

test('degrade: a flag that cannot be recorded is no licence to acknowledge', async () => {
  const { b } = barriers('degrade', { onDegrade: () => { throw new Error('EIO'); } });
  const one = ask(b);
  jest.advanceTimersByTime(1000);
  await flush();
  expect(one.answer).toMatchObject({ ok: false, reason: 'error' });
  expect(b.state).toBe('sync');
});

test('a secondary refuses barriers at once; a demoted primary fails those waiting', async () => {
  let primary = false;
  const { b } = barriers('block', { primary: () => primary });
  const refused = ask(b);
  await flush();
  expect(refused.answer).toMatchObject({ ok: false, reason: 'not-primary' });
  primary = true;
  const waiting = ask(b);
  b.failAll('demoted');
  await flush();
  expect(waiting.answer).toEqual({ ok: false, reason: 'error', message: 'demoted' });
  expect(jest.getTimerCount()).toBe(0);
});

test('a barrier that arrives during a scan asks for the next one (the loop must not sleep through its poll interval); none left once it started', async () => {
  const { b } = barriers('block');
  expect(b.needsScan()).toBe(false);
  ask(b); // arrives while the link idles: the kick wakes the loop
  expect(b.needsScan()).toBe(true);
  const scan1 = b.scanStarted();
  expect(b.needsScan()).toBe(false);
  const during = ask(b); // arrives while scan 1 runs: its kick finds no sleep to cut
  expect(b.needsScan()).toBe(true);
  b.durable(scan1); // scan 1 found nothing new: the loop would sleep now
  await flush();
  expect(during.answer).toBeUndefined();
  expect(b.needsScan()).toBe(true); // ...but must scan again at once
  b.durable(b.scanStarted());
  await flush();
  expect(during.answer).toEqual({ ok: true, state: 'sync' });
  expect(b.needsScan()).toBe(false);
});

test('degrade: barriers wait for an onDegrade that takes a while (the arbiter being told); one that fails refuses those that timed out, and the next timeout tries again', async () => {
  const pending: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const b = new SyncBarriers({
    timeoutMs: 1000,
    policy: 'degrade',
    primary: () => true,
    kick: () => undefined,
    onDegrade: () => new Promise<void>((resolve, reject) => pending.push({ resolve, reject })),
    now: () => Date.now(),
  });
  const one = ask(b);
  jest.advanceTimersByTime(1000);
  await flush();
  expect(pending).toHaveLength(1);
  expect(one.answer).toBeUndefined(); // not before the record is made
  const young = ask(b); // its own sync_timeout has not passed: an ack may still answer it
  pending[0].reject(new Error('arbiter unreachable'));
  await flush();
  expect(one.answer).toMatchObject({ ok: false, reason: 'error', message: expect.stringContaining('arbiter unreachable') });
  expect(young.answer).toBeUndefined();
  expect(b.state).toBe('sync');
  jest.advanceTimersByTime(1000);
  await flush();
  expect(pending).toHaveLength(2);
  const meanwhile = ask(b); // arrives while the second record is being made: answered with it
  pending[1].resolve();
  await flush();
  expect(young.answer).toEqual({ ok: true, state: 'degraded' });
  expect(meanwhile.answer).toEqual({ ok: true, state: 'degraded' });
  expect(b.state).toBe('degraded');
  expect(pending).toHaveLength(2);
});

test('a change of role ends a degraded state: reset puts the barriers back in sync (they wait for the secondary again)', async () => {
  const { b } = barriers('degrade');
  ask(b);
  jest.advanceTimersByTime(1000);
  await flush();
  expect(b.state).toBe('degraded');
  b.reset();
  expect(b.state).toBe('sync');
  const next = ask(b);
  await flush();
  expect(next.answer).toBeUndefined();
  b.durable(b.scanStarted());
  await flush();
  expect(next.answer).toEqual({ ok: true, state: 'sync' });
});

test('a barrier that times out after its node stopped being the primary is refused: no policy runs, nothing is recorded', async () => {
  let primary = true;
  const { b, degraded } = barriers('degrade', { primary: () => primary });
  const waiting = ask(b);
  primary = false; // e.g. a switchover handed the role over while it waited
  jest.advanceTimersByTime(1000);
  await flush();
  expect(waiting.answer).toMatchObject({ ok: false, reason: 'not-primary' });
  expect(degraded).toEqual([]);
  expect(b.state).toBe('sync');
});
