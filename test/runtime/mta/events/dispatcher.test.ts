import { join } from 'node:path';
import pino from 'pino';
import { CursorStore } from '../../../../runtime/mta/events/cursor-store';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Dispatcher, type AckedAhead, type SkipRecord } from '../../../../runtime/mta/events/dispatcher';
import { EventLog, eventFileName } from '../../../../runtime/mta/events/event-log';
import { endCursor, type Cursor } from '../../../../runtime/mta/events/log-reader';
import type { NewEvent } from '../../../../runtime/mta/events/types';
import { MemorySink } from '../../../helpers/event-sink';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { tempDir } from '../../../helpers/tmp';

const root = tempDir();
const logger = pino({ level: 'silent' });
const event = (n: number, extra: Partial<NewEvent> = {}): NewEvent =>
  ({
    time: new Date(1_700_000_000_000 + n).toISOString(), event: 'delivery', status: 'delivered', message_id: `m${n}`, attempt: 1,
    sender: 's@x.example', recipient: `r${n}@y.example`, domain: 'y.example', time_in_queue_ms: 5, size: 100, ...extra,
  }) as NewEvent;
const range = (from: number, to: number): NewEvent[] => Array.from({ length: to - from }, (_, i) => event(from + i));
const msgIds = (sink: MemorySink): string[] => sink.events().map((e) => e.message_id!);
const writer = (dir: string, name = 'w0', maxSize = 1 << 30): EventLog => new EventLog({ dir, name, maxSize, maxAgeMs: 3_600_000, fsync: false });

function dispatcher(dir: string, sink: MemorySink, extra: Partial<ConstructorParameters<typeof Dispatcher>[0]> = {}): Dispatcher {
  return new Dispatcher({ sink, dir, position: {}, logger, pollMs: 10, ...extra });
}

test('the cursor survives a restart: after it, the sink gets what came since and nothing it acknowledged', async () => {
  const dir = join(root, 'restart');
  const log = writer(dir);
  const store = new CursorStore(dir);
  const sink = new MemorySink('hook', 'ack', 10);
  const d1 = dispatcher(dir, sink, { position: store.load('hook') ?? {}, commit: (c) => store.save('hook', c) });
  d1.start();
  await log.write(range(0, 25));
  await waitUntil(() => sink.events().length === 25);
  await d1.close();
  // Events written while the primary is down.
  await log.write(range(25, 30));
  const saved = store.load('hook');
  expect(saved).toEqual(d1.position());
  const again = new MemorySink('hook', 'ack', 10);
  const d2 = dispatcher(dir, again, { position: store.load('hook')!, commit: (c) => store.save('hook', c) });
  d2.start();
  await waitUntil(() => again.events().length >= 5);
  await log.write(range(30, 32));
  await waitUntil(() => again.events().length >= 7);
  await d2.close();
  expect(msgIds(again)).toEqual(range(25, 32).map((e) => e.message_id));
  await log.close();
});

test('batches acknowledged ahead of one still in flight are not sent again after a restart, nor after a second one before the cursor passes them', async () => {
  const dir = join(root, 'ahead');
  const log = writer(dir);
  const store = new CursorStore(dir);
  const persist = { commit: (c: Cursor, a?: AckedAhead) => store.save('hook', c, a) };
  await log.write(range(0, 8));
  const sink = new MemorySink('hook', 'hold', 2, 3);
  const d1 = dispatcher(dir, sink, { ...persist });
  d1.start();
  await waitUntil(() => sink.held.length === 3);
  // The second and third are acknowledged, the first never is: the cursor stays before all three.
  sink.release(1);
  sink.release(1);
  await waitUntil(() => store.loadAcked('hook')?.ids.length === 4);
  const acked = sink.events().map((e) => e.message_id);
  await d1.close();

  // A restart: the first batch is sent again, the two acknowledged ones are not; then it stops again before acknowledging anything.
  const again = new MemorySink('hook', 'hold', 2, 1);
  const d2 = dispatcher(dir, again, { ...persist, position: store.load('hook')!, acked: store.loadAcked('hook') });
  d2.start();
  await waitUntil(() => again.held.length === 1);
  expect(again.held[0].batch.events.map((e) => e.message_id)).toEqual(['m0', 'm1']);
  await d2.close();

  const last = new MemorySink('hook', 'ack', 2, 1);
  const d3 = dispatcher(dir, last, { ...persist, position: store.load('hook')!, acked: store.loadAcked('hook') });
  d3.start();
  await waitUntil(() => msgIds(last).length === 4);
  expect(msgIds(last)).toEqual(['m0', 'm1', 'm6', 'm7']);
  expect(msgIds(last).filter((m) => acked.includes(m))).toEqual([]);
  // Once the cursor is past them, nothing acknowledged ahead is kept.
  await waitUntil(() => store.loadAcked('hook') === undefined);
  await d3.close();
  await log.close();
});

test('cursor writes are coalesced: many batches acknowledged within one window make one write, and close() writes the last position', async () => {
  const dir = join(root, 'coalesce');
  const log = writer(dir);
  const saved: Cursor[] = [];
  // One event a batch, one at a time: 40 acknowledgements, each moving the cursor.
  const sink = new MemorySink('hook', 'ack', 1, 1);
  const now = 1_000_000; // a clock that never reaches the window's end: only close() may write again
  const d = dispatcher(dir, sink, { now: () => now, saveEveryMs: 60_000, commit: async (c) => void saved.push(c) });
  await log.write(range(0, 40));
  d.start();
  try {
    await waitUntil(() => sink.acked.length === 40 && d.position().w0?.offset === endCursor(dir).w0.offset);
    await new Promise((r) => setImmediate(r));
    // The first acknowledgement is written at once; the 39 after it wait for the window.
    expect(saved).toHaveLength(1);
    expect(saved[0].w0.offset).toBeLessThan(endCursor(dir).w0.offset);
    // Retention deletes only behind what a restart would start from.
    expect(d.durablePosition()).toEqual(saved[0]);
  } finally {
    await d.close();
  }
  expect(saved).toHaveLength(2);
  expect(saved[1]).toEqual(endCursor(dir));
  expect(d.durablePosition()).toEqual(endCursor(dir));
  await log.close();
});

test('what is ready is sent at once, not held until the batch fills or max_wait passes', async () => {
  const dir = join(root, 'ready');
  const log = writer(dir);
  const sink = new MemorySink('hook', 'ack', 500, 1, 3_600_000);
  const d = dispatcher(dir, sink);
  d.start();
  await log.write(range(0, 3));
  await waitUntil(() => sink.acked.length === 1);
  expect(sink.acked[0].events).toHaveLength(3);
  // The line handed over is the log's own, byte for byte.
  expect(JSON.parse(sink.acked[0].lines[0])).toEqual(sink.acked[0].events[0]);
  await d.close();
  await log.close();
});

test('a sink that asks for full batches gets what is ready only when the batch fills or max_wait has passed', async () => {
  const dir = join(root, 'fill');
  const log = writer(dir);
  const sink = new MemorySink('acct', 'ack', 10, 1, 200);
  sink.fillBatches = true;
  let now = 1_000_000;
  const d = dispatcher(dir, sink, { now: () => now });
  // Read (nothing unread) and waiting: the status is async, waitUntil's check is not.
  const readAndWaiting = (n: number): (() => boolean) => {
    let st: { waitingEvents: number; waitingBytes: number } | undefined;
    return () => {
      void d.status().then((s) => (st = s));
      return st?.waitingEvents === n && st.waitingBytes === 0;
    };
  };
  d.start();
  await log.write(range(0, 3));
  await waitUntil(readAndWaiting(3));
  await log.write(range(3, 5));
  await waitUntil(readAndWaiting(5));
  expect(sink.offered).toHaveLength(0);
  now += 200; // max_wait since the first of them was read
  await waitUntil(() => sink.acked.length === 1);
  expect(msgIds(sink)).toEqual(range(0, 5).map((e) => e.message_id));
  // Full before max_wait: sent at once.
  await log.write(range(5, 15));
  await waitUntil(() => sink.acked.length === 2);
  expect(sink.acked[1].events).toHaveLength(10);
  await d.close();
  await log.close();
});

test('batches in flight up to concurrency; the cursor moves in log order even when a later batch is acknowledged first', async () => {
  const dir = join(root, 'order');
  const log = writer(dir);
  const saved: Cursor[] = [];
  const ahead: (AckedAhead | undefined)[] = [];
  const sink = new MemorySink('hook', 'hold', 2, 3);
  const start = endCursor(dir);
  const d = dispatcher(dir, sink, { commit: async (c, acked) => void (saved.push(c), ahead.push(acked)) });
  await log.write(range(0, 8));
  d.start();
  await waitUntil(() => sink.held.length === 3);
  // Never more than `concurrency` in flight.
  expect(sink.offered).toHaveLength(3);
  expect(d.position()).toEqual(start);
  // The third is acknowledged first: the cursor may not pass the first two.
  // It is saved beside the unmoved cursor by its event ids, so a restart does not send it again.
  const third = sink.held[2].batch.events.map((e) => e.event_id);
  sink.release(2);
  await waitUntil(() => saved.length >= 1);
  expect(d.position()).toEqual(start);
  expect(saved[0]).toEqual(start);
  expect(ahead[0]?.ids).toEqual(third);
  await waitUntil(() => sink.offered.length === 4); // its slot went to the fourth batch
  const before = saved.length;
  sink.release(0); // the first: the cursor moves past it alone
  await waitUntil(() => saved.length > before && saved.at(-1)!.w0 !== undefined);
  const afterFirst = d.position().w0.offset;
  expect(afterFirst).toBeGreaterThan(0);
  sink.release(0); // the second: now past the third as well
  await waitUntil(() => d.position().w0.offset > afterFirst);
  sink.release(0); // the fourth
  await waitUntil(() => sink.held.length === 0 && sink.acked.length === 4);
  await waitUntil(() => saved.at(-1)?.w0.offset === endCursor(dir).w0.offset);
  expect(msgIds(sink).sort()).toEqual(range(0, 8).map((e) => e.message_id).sort());
  await d.close();
  await log.close();
});

test("a sink's filter: kinds, statuses and metadata all must match; what it leaves out still moves its cursor", async () => {
  const dir = join(root, 'filter');
  const log = writer(dir);
  const sink = new MemorySink('tenant-a-bounces', 'ack', 100);
  const d = dispatcher(dir, sink, { filter: { kinds: ['delivery', 'bounce', 'purged'], statuses: ['failed'], metadata: { tenant: ['a', 'b'] } } });
  d.start();
  await log.write([
    event(1, { status: 'failed', metadata: { tenant: 'a' } }), // in
    event(2, { status: 'delivered', metadata: { tenant: 'a' } }), // status
    event(3, { status: 'failed', metadata: { tenant: 'c' } }), // tenant
    event(4, { status: 'failed' }), // no metadata
    { time: new Date().toISOString(), event: 'complaint', message_id: 'm5', recipient: 'r@y.example', matched_by: 'verp', feedback_type: 'abuse', metadata: { tenant: 'a' } }, // kind
    { time: new Date().toISOString(), event: 'purged', message_id: 'm6', recipient: 'r@y.example', metadata: { tenant: 'b' } }, // in: no status to filter on
    event(7, { status: 'failed', metadata: { tenant: 'b', campaign: 'x' } }), // in
  ]);
  await waitUntil(() => sink.events().length === 3);
  await waitUntil(() => d.position().w0?.offset === endCursor(dir).w0.offset);
  expect(msgIds(sink)).toEqual(['m1', 'm6', 'm7']);
  await d.close();
  await log.close();
});

test('a dead sink does not slow a live one: the live one gets every event while the dead one holds only its own slots', async () => {
  const dir = join(root, 'dead');
  const logs = [writer(dir, 'w0'), writer(dir, 'w1')];
  const live = new MemorySink('live', 'ack', 50, 2);
  const dead = new MemorySink('dead', 'dead', 50, 2);
  const dl = dispatcher(dir, live);
  const dd = dispatcher(dir, dead);
  dl.start();
  dd.start();
  for (let i = 0; i < 20; i++) await Promise.all(logs.map((l, k) => l.write(range(k * 10_000 + i * 100, k * 10_000 + i * 100 + 100))));
  await waitUntil(() => live.events().length === 4000, 10_000, () => `${live.events().length} of 4000`);
  expect(new Set(live.events().map((e) => e.event_id)).size).toBe(4000);
  // The dead sink was offered its two slots and no more: nothing of it held up the other.
  expect(dead.offered).toHaveLength(2);
  expect(dead.acked).toHaveLength(0);
  await Promise.all([dl.close(), dd.close(), dead.close(), ...logs.map((l) => l.close())]);
});

test('a clock stepped back does not stop the cursor being saved: a restart after it resends only what was in flight', async () => {
  const dir = join(root, 'clock-back-save');
  const log = writer(dir);
  const saved: Cursor[] = [];
  const sink = new MemorySink('hook', 'ack', 10, 1);
  let now = 1_000_000_000;
  const d = dispatcher(dir, sink, { now: () => now, commit: async (c) => void saved.push(c) });
  d.start();
  try {
    await log.write(range(0, 5));
    await waitUntil(() => saved.at(-1)?.w0?.offset === endCursor(dir).w0.offset);
    // NTP steps the wall clock back an hour; acknowledgements go on.
    now -= 3_600_000;
    await log.write(range(5, 10));
    await waitUntil(() => sink.acked.length === 2);
    await waitUntil(() => saved.at(-1)?.w0?.offset === endCursor(dir).w0.offset, 5_000, () => `saved ${JSON.stringify(saved.at(-1))}, end ${JSON.stringify(endCursor(dir))}`);
    expect(d.durablePosition()).toEqual(endCursor(dir));
  } finally {
    await d.close();
    await log.close();
  }
});

test('a clock stepped back does not hold a batch that waits to fill for as long as the step', async () => {
  const dir = join(root, 'clock-back-fill');
  const log = writer(dir);
  const sink = new MemorySink('acct', 'ack', 10, 1, 200);
  sink.fillBatches = true;
  let now = 1_000_000_000;
  const d = dispatcher(dir, sink, { now: () => now });
  d.start();
  try {
    await log.write(range(0, 3));
    await waitUntil(async () => {
      const st = await d.status();
      return st.waitingEvents === 3 && st.waitingBytes === 0;
    });
    expect(sink.offered).toHaveLength(0);
    now -= 3_600_000;
    await waitUntil(() => sink.acked.length === 1);
    expect(msgIds(sink)).toEqual(range(0, 3).map((e) => e.message_id));
  } finally {
    await d.close();
    await log.close();
  }
});

test('the bound skips each producer\'s files oldest first even when the clock stepped back between them: nothing is passed over without a record', async () => {
  const dir = join(root, 'bound-clock-back');
  mkdirSync(dir, { recursive: true });
  const lines = (from: number, to: number): string => range(from, to).map((e, i) => `${JSON.stringify({ ...e, event_id: `e${from + i}` })}\n`).join('');
  const hour = 3_600_000;
  const t = Date.UTC(2026, 11, 5, 10);
  // w0's second file was started after the clock was stepped back an hour: its stamp is older than the first's.
  writeFileSync(join(dir, eventFileName('w0', t, 1)), lines(0, 5));
  writeFileSync(join(dir, eventFileName('w0', t - hour, 2)), lines(5, 10));
  writeFileSync(join(dir, eventFileName('w0', t - hour + 60_000, 3)), lines(10, 15));
  const fileSize = lines(0, 5).length;
  const skips: SkipRecord[] = [];
  const sink = new MemorySink('hook', 'ack', 100, 1);
  // Past the bound by one file.
  const d = dispatcher(dir, sink, { maxQueue: 2 * fileSize + 100, onSkip: async (r) => void skips.push(r) });
  d.start();
  try {
    await waitUntil(() => skips.length === 1 && sink.events().length === 10, 5_000, () => `skipped ${JSON.stringify(skips.map((r) => r.files))}, sent ${msgIds(sink).join(' ')}`);
    expect(skips[0].files.map((f) => f.file)).toEqual([eventFileName('w0', t, 1)]);
    expect(skips[0].events).toBe(5);
    expect(msgIds(sink)).toEqual(range(5, 15).map((e) => e.message_id));
  } finally {
    await d.close();
  }
});

test('a damaged line that is JSON but not an event is passed over like any unreadable one, and the lines after it are still sent', async () => {
  const dir = join(root, 'not-an-event');
  mkdirSync(dir, { recursive: true });
  const line = (n: number): string => `${JSON.stringify({ ...event(n), event_id: `e${n}` })}\n`;
  writeFileSync(join(dir, eventFileName('w0', Date.UTC(2026, 11, 5), 1)), `${line(0)}null\n${line(1)}42\n${line(2)}`);
  const sink = new MemorySink('hook', 'ack', 100, 1);
  const d = dispatcher(dir, sink);
  d.start();
  try {
    await waitUntil(() => sink.events().length === 3, 5_000, () => `sent ${msgIds(sink).join(' ')}`);
    expect(msgIds(sink)).toEqual(['m0', 'm1', 'm2']);
    expect((await d.status()).corruptLines).toBe(2);
  } finally {
    await d.close();
  }
});
