// The distributor's bound on a destination that cannot say whether it took a
// batch (HTTP 500 `unknown`, or no answer): with an injected clock, the
// deadline (--give-up-after) gives it up, the batch stays held for it in the
// journal (never sent elsewhere), and an answer in between starts that time
// again, while --max-attempts counts the sends of one batch whatever the
// destination answers for others. The e2e with a real MTA and a real HTTPS
// destination, --max-attempts and the rerun, is in
// test/bin/commands/drain.test.ts.
import { join } from 'node:path';
import type { DrainRecord } from '../../../../../runtime/mta/drain/protocol';
import type { DestinationClient, SendOutcome } from '../../../../../runtime/mta/drain/source/destination-client';
import { Distributor, type Batch, type DistributorOptions } from '../../../../../runtime/mta/drain/source/distributor';
import { Journal, journalPath, readJournal, unsettled } from '../../../../../runtime/mta/drain/source/journal';
import { tempDir } from '../../../../helpers/tmp';

/** A Distributor as these tests run it: nothing to remove, one sender unless said, no wait between retries. */
const distributorWith = (o: Omit<DistributorOptions, 'remove' | 'concurrency' | 'retryDelayMs'> & { concurrency?: number }): Distributor =>
  new Distributor({ remove: async () => undefined, concurrency: 1, retryDelayMs: 0, ...o });

const dir = tempDir('volley-distributor-');
let runs = 0;

/** A destination whose answers a test scripts: `answer(n)` for its n-th request (from 1), at once or when a test lets it. */
function destination(label: string, answer: (n: number, ids: readonly string[]) => SendOutcome | Promise<SendOutcome>): DestinationClient & { sent: string[][] } {
  const sent: string[][] = [];
  return {
    address: { label, host: '127.0.0.1', port: 1 },
    sent,
    sendBatch: async (_body: Buffer, ids: readonly string[]) => {
      sent.push([...ids]);
      return answer(sent.length, ids);
    },
    have: async () => undefined,
    close: () => undefined,
  } as unknown as DestinationClient & { sent: string[][] };
}

function batches(...lists: string[][]): () => Promise<Batch | undefined> {
  const record = (id: string): DrainRecord => ({ header: { id, from: 'a@x.test', to: ['b@y.test'], received: 1, expires: 2, attempts: 0, via_original: 'smtp', size: 3 }, body: Buffer.from('x\r\n') });
  const queue: Batch[] = lists.map((ids) => ({ ids, records: ids.map(record) }));
  return async () => queue.shift();
}

const unknown: SendOutcome = { kind: 'retry', reason: 'HTTP 500: cannot say whether every message was stored', untaken: false };
const answered = (ids: readonly string[]): SendOutcome => ({ kind: 'answered', results: ids.map((id) => ({ id, status: 'queued' as const })) });

test('a destination that keeps answering 500 is given up at --give-up-after on the injected clock: its batch stays here, journaled to it, and nothing else is sent to it', async () => {
  let now = 1_000_000;
  const file = journalPath(join(dir, `pp${++runs}`));
  const journal = new Journal(file);
  let distributor: Distributor | undefined;
  const wedged = destination('wedged:1', (n) => {
    now += 20_000; // each failed send takes 20 s of the clock
    if (n >= 50) distributor?.stop(); // without a bound it never ends: stop it, so the test fails instead of hanging
    return unknown;
  });
  distributor = distributorWith({
    clients: [wedged],
    nextBatch: batches(['m1', 'm2'], ['m3']),
    journal,
    giveUp: { maxAttempts: 1000, afterMs: 60_000 },
    now: () => now,
  });
  const result = await distributor.run();
  journal.close();
  // First failure at +20 s, given up at the one 60 s after it: four sends of the same batch, the next never sent.
  expect(wedged.sent).toEqual([['m1', 'm2'], ['m1', 'm2'], ['m1', 'm2'], ['m1', 'm2']]);
  expect(result.stopped).toBe(false);
  expect(result.gaveUp).toEqual({ 'wedged:1': { reason: expect.stringContaining('60 s with no answer from it (last: HTTP 500'), ids: ['m1', 'm2'] } });
  expect(result.left.sort()).toEqual(['m1', 'm2']); // m3 was never read: with no destination left it stays in the spool
  // Still journaled to it, unreleased: a rerun sends them there only, an MTA started instead asks it.
  expect([...unsettled(readJournal(file))]).toEqual([['m1', 'wedged:1'], ['m2', 'wedged:1']]);
});

test('an answer from the destination starts --give-up-after again: runs of failures each shorter than the bound, with answers between, do not give it up', async () => {
  let now = 1_000_000;
  const file = journalPath(join(dir, `pp${++runs}`));
  const journal = new Journal(file);
  // Each batch: two 500s, then taken; every send takes 20 s of the clock, so the failures add up to
  // 120 s, but no run of them lasts the 60 s bound: each run ends with an answer.
  const flaky = destination('flaky:1', (n, ids) => {
    now += 20_000;
    return n % 3 === 0 ? answered(ids) : unknown;
  });
  const distributor = distributorWith({
    clients: [flaky],
    nextBatch: batches(['m1'], ['m2'], ['m3']),
    journal,
    giveUp: { maxAttempts: 1000, afterMs: 60_000 },
    now: () => now,
  });
  const result = await distributor.run();
  journal.close();
  expect({ gaveUp: result.gaveUp, left: result.left, moved: result.moved }).toEqual({ gaveUp: {}, left: [], moved: { 'flaky:1': 3 } });
  expect(flaky.sent).toHaveLength(9);
});

test('--max-attempts counts the sends of one batch: answers to the destination\'s other batches in between do not reset it', async () => {
  const file = journalPath(join(dir, `pp${++runs}`));
  const journal = new Journal(file);
  // m1 is never settled (say its worker is wedged); every other batch is taken. Two senders, so
  // the destination answers other batches between m1's sends.
  const d = destination('d:1', (_n, ids) => (ids[0] === 'm1' ? unknown : answered(ids)));
  const distributor = distributorWith({
    clients: [d],
    nextBatch: batches(['m1'], ['m2'], ['m3'], ['m4'], ['m5'], ['m6'], ['m7'], ['m8']),
    journal,
    concurrency: 2,
    giveUp: { maxAttempts: 3, afterMs: 3_600_000 },
  });
  const result = await distributor.run();
  journal.close();
  const order = d.sent.map((ids) => ids[0]);
  const m1 = order.flatMap((id, i) => (id === 'm1' ? [i] : []));
  expect(m1).toHaveLength(3);
  expect(order.slice(m1[0], m1[2]).some((id) => id !== 'm1')).toBe(true); // answers came in between
  expect(result.gaveUp).toEqual({ 'd:1': { reason: expect.stringContaining('3 sends of one batch'), ids: ['m1'] } });
});

test('a 413 is an answer too: it starts --give-up-after again for the held halves', async () => {
  let now = 1_000_000;
  const file = journalPath(join(dir, `pp${++runs}`));
  const journal = new Journal(file);
  // 500 (the batch is held), 413 (split: the halves stay held here), a 500 for each half, then both taken.
  // 20 s a send: 60 s from the first 500 to the last, but only 40 s since the 413.
  const d = destination('d:1', (n, ids) => {
    now += 20_000;
    if (n === 2) return { kind: 'never', status: 413, reason: 'HTTP 413: the batch exceeds drain.max_batch_bytes' };
    return n === 1 || n === 3 || n === 4 ? unknown : answered(ids);
  });
  const distributor = distributorWith({
    clients: [d],
    nextBatch: batches(['m1', 'm2']),
    journal,
    giveUp: { maxAttempts: 1000, afterMs: 60_000 },
    now: () => now,
  });
  const result = await distributor.run();
  journal.close();
  expect(d.sent).toEqual([['m1', 'm2'], ['m1', 'm2'], ['m1'], ['m2'], ['m1'], ['m2']]);
  expect({ gaveUp: result.gaveUp, left: result.left, moved: result.moved }).toEqual({ gaveUp: {}, left: [], moved: { 'd:1': 2 } });
});

test.each([
  ['413 (split)', { kind: 'never', status: 413, reason: 'HTTP 413: the batch exceeds drain.max_batch_bytes' }, ['m2', 'm3']],
  ['401 (refused for good)', { kind: 'never', status: 401, reason: 'HTTP 401: the signature does not match' }, ['m2', 'm3']],
  // One message alone answered 413 was reported refused, though an earlier request with it may have been taken there.
  ['413 for one message', { kind: 'never', status: 413, reason: 'HTTP 413: the batch exceeds drain.max_batch_bytes' }, ['m2']],
] as [string, SendOutcome, string[]][])('a held batch in flight when its destination is given up, then answered %s: its ids are named with the given-up ones (they stay here, journaled to it)', async (_what, late, second) => {
  const file = journalPath(join(dir, `pp${++runs}`));
  const journal = new Journal(file);
  // m1 and [m2, m3] each fail once and are held; both are sent again at once (two senders). m1's
  // second failure gives the destination up (--max-attempts 2) while [m2, m3] is in flight; that
  // one is answered after the give-up (a 413's halves come back for a given-up destination).
  let gaveUp!: () => void;
  const given = new Promise<void>((resolve) => (gaveUp = resolve));
  let secondStarted!: () => void;
  const started = new Promise<void>((resolve) => (secondStarted = resolve));
  const sends = new Map<string, number>();
  const d = destination('d:1', async (_n, ids) => {
    const n = (sends.get(ids[0]) ?? 0) + 1;
    sends.set(ids[0], n);
    if (ids[0] === 'm1') {
      if (n === 2) await started;
      return unknown;
    }
    if (n === 1) return unknown;
    secondStarted();
    await given;
    return late;
  });
  const distributor = distributorWith({
    clients: [d],
    nextBatch: batches(['m1'], second),
    journal,
    concurrency: 2,
    giveUp: { maxAttempts: 2, afterMs: 3_600_000 },
    onProblem: (p) => p.kind === 'gave-up' && gaveUp(),
  });
  const result = await distributor.run();
  journal.close();
  expect(d.sent).toHaveLength(4);
  expect(result.gaveUp['d:1'].ids.sort()).toEqual(['m1', ...second]);
  expect(result.left.sort()).toEqual(['m1', ...second]);
  expect([...unsettled(readJournal(file))].sort()).toEqual(['m1', ...second].map((id) => [id, 'd:1']));
});
