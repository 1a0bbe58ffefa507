// The sync primary's scan pace: the first scan at once, the next no sooner
// than the gap after the one before it (an injected clock); and two daemons
// over the real link with the pace's wait held by hand: barriers that come
// meanwhile share the one scan after it, and none is answered before the
// secondary's ack of the batch that covers it.
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MirrorDaemon } from '../../../runtime/mirror/daemon';
import { ScanPace, pause } from '../../../runtime/mirror/scan-pace';
import { writeState } from '../../../runtime/mirror/state';
import { MirrorSyncClient } from '../../../runtime/shared/mirror-sync/client';
import { getFreePort } from '../../helpers/postfix-tools';
import { waitUntil } from '../../helpers/proxy-fixtures';
import { inProcessMirrors, type MirrorHooks } from '../../helpers/mirror-daemons';

test('the first scan starts at once; the next waits out the rest of the gap, and none once it has passed', () => {
  let t = 1_000;
  const pace = new ScanPace(3, () => t);
  expect(pace.delay()).toBe(0);
  pace.started();
  expect(pace.delay()).toBe(3);
  t += 2;
  expect(pace.delay()).toBe(1);
  t += 1;
  expect(pace.delay()).toBe(0);
  pace.started();
  t += 10;
  expect(pace.delay()).toBe(0);
});

test('a clock stepped back does not stretch the wait past the gap', () => {
  let t = 1_000_000;
  const pace = new ScanPace(6, () => t);
  pace.started();
  t -= 60_000; // NTP stepped the clock back a minute
  expect(pace.delay()).toBe(6);
});

test('pause resolves on its timer only', async () => {
  jest.useFakeTimers();
  try {
    let done = false;
    const p = pause(3).then(() => (done = true));
    jest.advanceTimersByTime(2);
    await Promise.resolve();
    expect(done).toBe(false);
    jest.advanceTimersByTime(1);
    await p;
    expect(done).toBe(true);
  } finally {
    jest.useRealTimers();
  }
});

describe('a sync primary pacing its scans', () => {
  const mirrors = inProcessMirrors('volley-mirror-pace-');
  const base = mirrors.base;
  const closing = mirrors.closing;

  function node(name: string, ports: { self: number; peer: number }, hooks: MirrorHooks = {}): Promise<{ daemon: MirrorDaemon; root: string }> {
    return mirrors.node(name, ports, 'poll_interval: 10s\nmode: sync\nsync_timeout: 30s\n', hooks);
  }

  test('barriers that come while the next scan waits for the pace share that scan and its batch, each answered only after its ack', async () => {
    const pa = await getFreePort();
    const pb = await getFreePort();
    writeState(join(base, 'a'), { role: 'primary', epoch: 1, caughtUp: false });
    // A clock that stands still: once a scan has run, every next one waits for the pace, here held by hand.
    let hold = false;
    const held: (() => void)[] = [];
    const hooks = { now: () => 1_000_000, pause: () => (hold ? new Promise<void>((resolve) => held.push(resolve)) : Promise.resolve()) };
    const b = await node('b', { self: pb, peer: pa });
    const a = await node('a', { self: pa, peer: pb }, hooks);
    closing.push(() => held.splice(0).forEach((r) => r()));
    await waitUntil(() => a.daemon.status().caught_up, 20_000);
    // One client each, as the MTA's workers are: concurrent barriers from different group commits.
    const client = (): MirrorSyncClient => {
      const c = new MirrorSyncClient({ socket: join(a.root, 'mirror', 'sync.sock'), timeoutMs: 40_000 });
      closing.push(() => c.close());
      return c;
    };
    const seg = join('spool', 'p000', '000000000001.seg');
    const answered: string[] = [];
    // The first barrier after the catch-up is not paced (nor was the catch-up): it sets the pace for the next.
    appendFileSync(join(a.root, seg), 'zero\n');
    await client().barrier();
    expect(held).toEqual([]);
    hold = true;
    appendFileSync(join(a.root, seg), 'one\n');
    const one = client().barrier().then(() => answered.push('one'));
    await waitUntil(() => held.length === 1, 10_000, () => 'the scan for the barrier did not wait for the pace');
    const batches = a.daemon.status().batches;
    appendFileSync(join(a.root, seg), 'two\n');
    const two = client().barrier().then(() => answered.push('two'));
    appendFileSync(join(a.root, seg), 'three\n');
    const three = client().barrier().then(() => answered.push('three'));
    await waitUntil(() => a.daemon.status().sync?.barriers_waiting === 3, 10_000, () => `${a.daemon.status().sync?.barriers_waiting} barriers waiting`);
    // Nothing was scanned meanwhile: nothing new is on the secondary, nothing answered.
    expect(answered).toEqual([]);
    expect(readFileSync(join(b.root, seg), 'utf8')).toBe('zero\n');
    hold = false;
    held[0]();
    await Promise.all([one, two, three]);
    expect(answered.sort()).toEqual(['one', 'three', 'two']);
    expect(readFileSync(join(b.root, seg), 'utf8')).toBe('zero\none\ntwo\nthree\n');
    // One batch (and one ack) answered all three.
    expect(a.daemon.status().batches).toBe(batches + 1);
  });

  test('a barrier after idle scans and a catch-up is not paced: only scans that answer barriers set the pace', async () => {
    const pa = await getFreePort();
    const pb = await getFreePort();
    writeState(join(base, 'c'), { role: 'primary', epoch: 1, caughtUp: false });
    // The same standing clock: had the catch-up's or an idle poll's scan set the pace, this barrier would wait for it.
    const held: (() => void)[] = [];
    const hooks = { now: () => 1_000_000, pause: () => new Promise<void>((resolve) => held.push(resolve)) };
    const d = await node('d', { self: pb, peer: pa });
    const c = await node('c', { self: pa, peer: pb }, hooks);
    closing.push(() => held.splice(0).forEach((r) => r()));
    await waitUntil(() => c.daemon.status().caught_up, 20_000);
    const seg = join('spool', 'p000', '000000000001.seg');
    appendFileSync(join(c.root, seg), 'lone\n');
    const client = new MirrorSyncClient({ socket: join(c.root, 'mirror', 'sync.sock'), timeoutMs: 40_000 });
    closing.push(() => client.close());
    let answered = false;
    const barrier = client.barrier().then(() => (answered = true));
    await waitUntil(() => answered || held.length > 0, 10_000);
    expect({ answered, paced: held.length }).toEqual({ answered: true, paced: 0 });
    await barrier;
    expect(readFileSync(join(d.root, seg), 'utf8')).toBe('lone\n');
  });
});
