// The window of replication batches on the link: acks come back in order and
// settle the oldest batch; `received` frames are skipped; any other frame, or
// an ack for another batch, is a protocol error; a wait cut short by a
// barrier and taken up again reads on where it was (no frame read twice).
import { InFlight } from '../../../runtime/mirror/in-flight';
import type { Batch } from '../../../runtime/mirror/sender';
import type { Frame } from '../../../runtime/shared/proxy-protocol';

const batch = (): Batch => ({ ops: [], body: Buffer.alloc(0), moves: [], scannedAt: 0, complete: true });

/** Frames handed out one `next()` at a time, pushed by the test whenever it likes. */
function frames(): { next: () => Promise<Frame>; push: (header: Record<string, unknown>) => void; reads: () => number } {
  const ready: Frame[] = [];
  const waiting: ((f: Frame) => void)[] = [];
  let reads = 0;
  return {
    next: () => {
      reads++;
      const f = ready.shift();
      return f ? Promise.resolve(f) : new Promise((resolve) => waiting.push(resolve));
    },
    push: (header) => {
      const f = { header } as unknown as Frame;
      const w = waiting.shift();
      if (w) w(f);
      else ready.push(f);
    },
    reads: () => reads,
  };
}

test('acks settle the batches oldest first, skipping received frames', async () => {
  const link = frames();
  const flight = new InFlight(2, link.next);
  flight.add({ seq: 1, batch: batch(), scan: 1 });
  flight.add({ seq: 2, batch: batch(), scan: 2 });
  expect(flight.full).toBe(true);
  expect(() => flight.add({ seq: 3, batch: batch() })).toThrow(/more than 2 batches/);
  link.push({ t: 'received', seq: 1 });
  link.push({ t: 'ack', seq: 1 });
  link.push({ t: 'received', seq: 2 });
  link.push({ t: 'ack', seq: 2 });
  const first = await flight.acked();
  expect(first.seq).toBe(1);
  flight.landed(first);
  expect(flight.size).toBe(1);
  const second = await flight.acked();
  expect(second.scan).toBe(2);
  flight.landed(second);
  expect(flight.size).toBe(0);
  await expect(flight.acked()).rejects.toMatchObject({ code: 'EMIRRORPROTO' });
});

test('a wait taken up again continues the same read: one frame, one ack', async () => {
  const link = frames();
  const flight = new InFlight(2, link.next);
  flight.add({ seq: 7, batch: batch() });
  const cut = flight.acked();
  // A barrier cut the wait short; the loop asks again before the ack came.
  const again = flight.acked();
  expect(again).toBe(cut);
  expect(link.reads()).toBe(1);
  link.push({ t: 'ack', seq: 7 });
  expect((await again).seq).toBe(7);
  expect(flight.size).toBe(1);
});

test('an ack that came while nobody waited is handed out again until it is recorded, not lost', async () => {
  const link = frames();
  const flight = new InFlight(2, link.next);
  const entry = { seq: 3, batch: batch(), scan: 5 };
  flight.add(entry);
  // The daemon's wait was cut short by a barrier; the ack lands while it scans.
  const abandoned = flight.acked();
  link.push({ t: 'ack', seq: 3 });
  await abandoned;
  flight.add({ seq: 4, batch: batch(), scan: 6 });
  // Its next wait gets that ack (its barriers are answered), not a wait for batch 4.
  await expect(flight.acked()).resolves.toBe(entry);
  flight.landed(entry);
  expect(flight.size).toBe(1);
  expect(() => flight.landed(entry)).toThrow(/out of order/);
});

test('an ack out of order or another frame is EMIRRORPROTO', async () => {
  const link = frames();
  const flight = new InFlight(2, link.next);
  flight.add({ seq: 1, batch: batch() });
  flight.add({ seq: 2, batch: batch() });
  link.push({ t: 'ack', seq: 2 });
  await expect(flight.acked()).rejects.toThrow(/expected ack 1, got ack 2/);
  const other = new InFlight(1, link.next);
  other.add({ seq: 1, batch: batch() });
  link.push({ t: 'error', message: 'no' });
  await expect(other.acked()).rejects.toMatchObject({ code: 'EMIRRORPROTO' });
});

test('a window below one batch is refused', () => {
  expect(() => new InFlight(0, frames().next)).toThrow(/at least 1/);
});
