// The distributor's bound on a destination that cannot say whether it took a
// batch (HTTP 500 `unknown`, or no answer): with an injected clock, the
// deadline (--give-up-after) gives it up, the batch stays held for it in the
// journal (never sent elsewhere), and an answer in between starts the count
// again. The e2e with a real MTA and a real HTTPS destination, --max-attempts
// and the rerun, is in test/bin/commands/drain.test.ts.
import { join } from 'node:path';
import type { DrainRecord } from '../../../../../runtime/mta/drain/protocol';
import type { DestinationClient, SendOutcome } from '../../../../../runtime/mta/drain/source/destination-client';
import { Distributor, type Batch } from '../../../../../runtime/mta/drain/source/distributor';
import { Journal, journalPath, readJournal, unsettled } from '../../../../../runtime/mta/drain/source/journal';
import { tempDir } from '../../../../helpers/tmp';

const dir = tempDir('volley-distributor-');
let runs = 0;

/** A destination whose answers a test scripts: `answer(n)` for its n-th request (from 1). */
function destination(label: string, answer: (n: number, ids: readonly string[]) => SendOutcome): DestinationClient & { sent: string[][] } {
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
  distributor = new Distributor({
    clients: [wedged],
    nextBatch: batches(['m1', 'm2'], ['m3']),
    journal,
    remove: async () => undefined,
    concurrency: 1,
    retryDelayMs: 0,
    giveUp: { maxAttempts: 1000, afterMs: 60_000 },
    now: () => now,
  });
  const result = await distributor.run();
  journal.close();
  // First failure at +20 s, given up at the one 60 s after it: four sends of the same batch, the next never sent.
  expect(wedged.sent).toEqual([['m1', 'm2'], ['m1', 'm2'], ['m1', 'm2'], ['m1', 'm2']]);
  expect(result.stopped).toBe(false);
  expect(result.gaveUp).toEqual({ 'wedged:1': { reason: expect.stringContaining('60 s without an answer that settles it (last: HTTP 500'), ids: ['m1', 'm2'] } });
  expect(result.left.sort()).toEqual(['m1', 'm2']); // m3 was never read: with no destination left it stays in the spool
  // Still journaled to it, unreleased: a rerun sends them there only, an MTA started instead asks it.
  expect([...unsettled(readJournal(file))]).toEqual([['m1', 'wedged:1'], ['m2', 'wedged:1']]);
});

test('an answer from the destination starts its count again: failures that never run --max-attempts in a row do not give it up', async () => {
  const file = journalPath(join(dir, `pp${++runs}`));
  const journal = new Journal(file);
  // Each batch: two 500s, then taken; with --max-attempts 3 it is never given up.
  const flaky = destination('flaky:1', (n, ids) => (n % 3 === 0 ? answered(ids) : unknown));
  const distributor = new Distributor({
    clients: [flaky],
    nextBatch: batches(['m1'], ['m2'], ['m3']),
    journal,
    remove: async () => undefined,
    concurrency: 1,
    retryDelayMs: 0,
    giveUp: { maxAttempts: 3, afterMs: 3_600_000 },
  });
  const result = await distributor.run();
  journal.close();
  expect({ gaveUp: result.gaveUp, left: result.left, moved: result.moved }).toEqual({ gaveUp: {}, left: [], moved: { 'flaky:1': 3 } });
  expect(flaky.sent).toHaveLength(9);
});
