// The lease keeper on a fake clock (jest's fake timers) over an in-memory
// arbiter: the primary renews every ttl/3 and, once it cannot, fences itself
// FENCE_MARGIN before its lease expires (never after, never while renewals
// succeed); a secondary takes an expired lease only when it may (caught up,
// not outdated, the holder not saying its peer is outdated), with epoch + 1,
// and of two takers one wins; a manual promotion's acquire is refused while
// another node's lease is live, unless forced or handed over.
import pino from 'pino';
import type { Arbiter, Lease, LeaseRead } from '../../../runtime/mirror/arbiter';
import { leaseConflict } from '../../../runtime/mirror/arbiter';
import { FENCE_MARGIN, LeaseKeeper, RENEW_NOW_DEADLINE_MS, type LeaseHost } from '../../../runtime/mirror/lease';
import { MTA_MIRROR_MARGIN_MS } from '../../../stacks/topology';
import type { MirrorState } from '../../../runtime/mirror/state';

const TTL = 9_000;
const logger = pino({ level: 'silent' });

/** An arbiter in memory with a switch that makes every call fail (the arbiter unreachable for this node). */
class MemoryArbiter implements Arbiter {
  readonly where = 'memory';
  version = 0;
  lease?: Lease;
  down = false;
  writes: Lease[] = [];
  async read(): Promise<LeaseRead> {
    if (this.down) throw Object.assign(new Error('unreachable'), { code: 'EARBITER' });
    return this.lease ? { lease: { ...this.lease }, etag: String(this.version) } : {};
  }
  async write(lease: Lease, ifMatch: string | undefined): Promise<string> {
    if (this.down) throw Object.assign(new Error('unreachable'), { code: 'EARBITER' });
    if (ifMatch === undefined ? this.lease !== undefined : ifMatch !== String(this.version)) throw leaseConflict(this.where);
    this.lease = { ...lease };
    this.writes.push(this.lease);
    return String(++this.version);
  }
}

interface Host extends LeaseHost {
  s: MirrorState;
  fenced: { at: number; why: string }[];
  took: number[];
  lostTo: Lease[];
}

function host(s: MirrorState): Host {
  const h: Host = {
    s,
    fenced: [],
    took: [],
    lostTo: [],
    state: () => h.s,
    selfFence: (why) => {
      h.fenced.push({ at: Date.now(), why });
      h.s = { ...h.s, role: 'secondary', caughtUp: false };
    },
    superseded: (l) => h.lostTo.push(l),
    cannotTakeOver: (l) => (!h.s.caughtUp ? 'not caught up' : h.s.outdated ? 'outdated' : l.peer_outdated ? 'peer outdated' : undefined),
    tookOver: (epoch) => {
      h.took.push(epoch);
      h.s = { ...h.s, role: 'primary', epoch };
    },
  } as Host;
  return h;
}

const keepers: LeaseKeeper[] = [];
function keeper(arbiter: Arbiter, name: string, h: Host): LeaseKeeper {
  const k = new LeaseKeeper({ arbiter, name, ttlMs: TTL, host: h, logger });
  keepers.push(k);
  k.start();
  return k;
}

beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
afterEach(async () => {
  for (const k of keepers.splice(0)) {
    const stopping = k.stop();
    await jest.runOnlyPendingTimersAsync();
    await stopping;
  }
  jest.useRealTimers();
});

test('the primary creates the lease and renews it every ttl/3; it never fences while renewals succeed', async () => {
  const arbiter = new MemoryArbiter();
  const a = host({ role: 'primary', epoch: 4, caughtUp: true });
  keeper(arbiter, 'a', a);
  await jest.advanceTimersByTimeAsync(0);
  expect(arbiter.lease).toEqual({ holder: 'a', epoch: 4, expires_at: 1_000_000 + TTL });
  await jest.advanceTimersByTimeAsync(10 * TTL);
  expect(arbiter.writes.length).toBeGreaterThanOrEqual(30);
  expect(a.fenced).toEqual([]);
  expect(arbiter.lease!.expires_at).toBeGreaterThan(Date.now());
});

test('a primary that loses the arbiter fences itself FENCE_MARGIN before its lease expires, and the peer takes it only after', async () => {
  const arbiter = new MemoryArbiter();
  const a = host({ role: 'primary', epoch: 1, caughtUp: true });
  const b = host({ role: 'secondary', epoch: 1, caughtUp: true });
  // b's view of the arbiter works; a's goes down.
  let cutA = false;
  const aView: Arbiter = { where: 'a-view', read: () => (cutA ? Promise.reject(new Error('cut')) : arbiter.read()), write: (l, m) => (cutA ? Promise.reject(new Error('cut')) : arbiter.write(l, m)) };
  keeper(aView, 'a', a);
  keeper(arbiter, 'b', b);
  await jest.advanceTimersByTimeAsync(TTL);
  expect(b.took).toEqual([]); // a renews: b waits
  const held = arbiter.lease!.expires_at;
  cutA = true;
  await jest.advanceTimersByTimeAsync(2 * TTL);
  expect(a.fenced).toHaveLength(1);
  expect(a.fenced[0].at).toBeLessThanOrEqual(held - TTL * FENCE_MARGIN);
  expect(b.took).toEqual([2]);
  expect(arbiter.lease).toMatchObject({ holder: 'b', epoch: 2 });
  // b took it after a's expiry, and a had fenced before that.
  expect(arbiter.writes.find((l) => l.holder === 'b')!.expires_at - TTL).toBeGreaterThanOrEqual(held);
  expect(a.fenced[0].at).toBeLessThan(held);
});

test('a secondary that is not caught up, outdated, or whose primary says it is outdated never takes the lease', async () => {
  for (const [state, peerOutdated] of [
    [{ role: 'secondary', epoch: 1, caughtUp: false }, false],
    [{ role: 'secondary', epoch: 1, caughtUp: true, outdated: true }, false],
    [{ role: 'secondary', epoch: 1, caughtUp: true }, true],
  ] as const) {
    const arbiter = new MemoryArbiter();
    arbiter.lease = { holder: 'a', epoch: 1, expires_at: Date.now() + TTL, ...(peerOutdated ? { peer_outdated: true } : {}) };
    const b = host({ ...state });
    keeper(arbiter, 'b', b);
    await jest.advanceTimersByTimeAsync(5 * TTL);
    expect(b.took).toEqual([]);
    expect(arbiter.lease.holder).toBe('a');
  }
});

test('the primary carries peer_outdated into the lease', async () => {
  const arbiter = new MemoryArbiter();
  keeper(arbiter, 'a', host({ role: 'primary', epoch: 1, caughtUp: true, peerOutdated: true }));
  await jest.advanceTimersByTimeAsync(0);
  expect(arbiter.lease).toMatchObject({ peer_outdated: true });
});

test('renewNow: the primary writes at once (peer_outdated as the state says now), after a round under way, and the next renewal is ttl/3 later; a failed write rejects and is retried soon', async () => {
  const arbiter = new MemoryArbiter();
  const a = host({ role: 'primary', epoch: 1, caughtUp: true });
  const k = keeper(arbiter, 'a', a);
  await jest.advanceTimersByTimeAsync(0);
  expect(arbiter.writes).toHaveLength(1);
  // Slow arbiter: the round due at ttl/3 is under way when the degrade asks for a write.
  const slowWrite = arbiter.write.bind(arbiter);
  let release!: () => void;
  arbiter.write = (l, m) => new Promise<void>((r) => (release = r)).then(() => slowWrite(l, m));
  await jest.advanceTimersByTimeAsync(TTL / 3);
  a.s = { ...a.s, peerOutdated: true };
  let done = false;
  const now = k.renewNow().then(() => (done = true));
  release();
  await jest.advanceTimersByTimeAsync(0);
  release(); // renewNow's own write, conditioned on the version the round left
  await now;
  expect(done).toBe(true);
  expect(arbiter.writes.map((l) => l.peer_outdated === true)).toEqual([false, false, true]);
  arbiter.write = slowWrite;
  await jest.advanceTimersByTimeAsync(TTL / 3 - 1);
  expect(arbiter.writes).toHaveLength(3);
  await jest.advanceTimersByTimeAsync(1);
  expect(arbiter.writes).toHaveLength(4);
  arbiter.down = true;
  await expect(k.renewNow()).rejects.toThrow(/unreachable/);
  arbiter.down = false;
  await jest.advanceTimersByTimeAsync(TTL / 10);
  expect(arbiter.writes).toHaveLength(5);
  expect(a.fenced).toEqual([]);
});

test('renewNow after a round that made this node a secondary (a higher epoch in the lease) rejects and writes nothing', async () => {
  const arbiter = new MemoryArbiter();
  const a = host({ role: 'primary', epoch: 1, caughtUp: true });
  // As the daemon's demote does: the node becomes the secondary of the lease's epoch.
  a.superseded = (l) => (a.lostTo.push(l), (a.s = { ...a.s, role: 'secondary', epoch: l.epoch, caughtUp: false }));
  const k = keeper(arbiter, 'a', a);
  await jest.advanceTimersByTimeAsync(0);
  // Another node took the lease with epoch 2; the round due at ttl/3 is held until renewNow waits for it.
  arbiter.lease = { holder: 'b', epoch: 2, expires_at: Date.now() + TTL };
  arbiter.version++;
  const slowRead = arbiter.read.bind(arbiter);
  let release!: () => void;
  arbiter.read = () => new Promise<void>((r) => (release = r)).then(() => slowRead());
  await jest.advanceTimersByTimeAsync(TTL / 3);
  const now = k.renewNow().catch((err: { code?: string }) => err);
  arbiter.read = slowRead;
  release();
  await expect(now).resolves.toMatchObject({ code: 'ENOTPRIMARY' });
  expect(a.lostTo).toHaveLength(1);
  expect(a.fenced).toEqual([]);
  expect(arbiter.lease).toMatchObject({ holder: 'b', epoch: 2 });
  expect(arbiter.writes).toHaveLength(1);
});

test('renewNow gives up after RENEW_NOW_DEADLINE_MS on an arbiter that does not answer, well inside the MTA\'s margin over sync_timeout', async () => {
  expect(RENEW_NOW_DEADLINE_MS).toBeLessThanOrEqual(MTA_MIRROR_MARGIN_MS - 1000);
  const arbiter = new MemoryArbiter();
  const a = host({ role: 'primary', epoch: 1, caughtUp: true });
  const k = keeper(arbiter, 'a', a);
  await jest.advanceTimersByTimeAsync(0);
  // A slow S3 arbiter: the round under way hangs, and so would renewNow's own write behind it.
  const slowWrite = arbiter.write.bind(arbiter);
  const held: (() => void)[] = [];
  arbiter.write = (l, m) => new Promise<void>((r) => held.push(r)).then(() => slowWrite(l, m));
  await jest.advanceTimersByTimeAsync(TTL / 3);
  a.s = { ...a.s, peerOutdated: true };
  let result: unknown;
  void k.renewNow().then(
    () => (result = 'written'),
    (err: unknown) => (result = err),
  );
  await jest.advanceTimersByTimeAsync(RENEW_NOW_DEADLINE_MS - 1);
  expect(result).toBeUndefined();
  await jest.advanceTimersByTimeAsync(1);
  expect(result).toMatchObject({ code: 'ELEASETIMEOUT' });
  // Given up: when the round finally ends, renewNow does not write behind the caller's back; the regular rounds carry the flag.
  arbiter.write = slowWrite;
  held.splice(0).forEach((r) => r());
  await jest.advanceTimersByTimeAsync(0);
  expect(arbiter.writes.map((l) => l.peer_outdated === true)).toEqual([false, false]);
  await jest.advanceTimersByTimeAsync(TTL / 3);
  expect(arbiter.writes.map((l) => l.peer_outdated === true)).toEqual([false, false, true]);
});

test('two secondaries racing for an expired lease: exactly one takes it', async () => {
  const arbiter = new MemoryArbiter();
  arbiter.lease = { holder: 'a', epoch: 3, expires_at: Date.now() - 1 };
  arbiter.version = 7;
  const b = host({ role: 'secondary', epoch: 3, caughtUp: true });
  const c = host({ role: 'secondary', epoch: 3, caughtUp: true });
  keeper(arbiter, 'b', b);
  keeper(arbiter, 'c', c);
  await jest.advanceTimersByTimeAsync(TTL);
  expect([...b.took, ...c.took]).toEqual([4]);
});

test('a primary that finds a higher epoch in the lease steps down to it', async () => {
  const arbiter = new MemoryArbiter();
  arbiter.lease = { holder: 'b', epoch: 5, expires_at: Date.now() + TTL };
  const a = host({ role: 'primary', epoch: 4, caughtUp: true });
  keeper(arbiter, 'a', a);
  await jest.advanceTimersByTimeAsync(0);
  expect(a.lostTo).toEqual([arbiter.lease]);
  expect(arbiter.lease.holder).toBe('b');
});

test('acquire (manual promotion): refused while another node\'s lease is live, unless forced or handed over by that holder', async () => {
  const arbiter = new MemoryArbiter();
  arbiter.lease = { holder: 'a', epoch: 1, expires_at: Date.now() + TTL };
  const b = host({ role: 'secondary', epoch: 1, caughtUp: true });
  const k = new LeaseKeeper({ arbiter, name: 'b', ttlMs: TTL, host: b, logger });
  await expect(k.acquire(2)).rejects.toMatchObject({ code: 'ELEASEHELD' });
  await expect(k.acquire(2, { from: { holder: 'a', epoch: 0 } })).rejects.toMatchObject({ code: 'ELEASEHELD' });
  await k.acquire(2, { from: { holder: 'a', epoch: 1 } });
  expect(arbiter.lease).toMatchObject({ holder: 'b', epoch: 2 });
  arbiter.lease = { holder: 'a', epoch: 1, expires_at: Date.now() + TTL };
  await k.acquire(2, { force: true });
  expect(arbiter.lease).toMatchObject({ holder: 'b', epoch: 2 });
  // An expired lease is free without force.
  arbiter.lease = { holder: 'a', epoch: 1, expires_at: Date.now() - 1 };
  await k.acquire(2);
  expect(arbiter.lease).toMatchObject({ holder: 'b', epoch: 2 });
  await k.stop();
});
