// An MTA started where a drain was killed: what it asks the destination and
// what it removes or releases, against a test destination on 127.0.0.1, and
// against the real drain endpoint when the destination's copy moved on (and a
// rerun's resend of that batch, which asks the same question by sending it).
import { join } from 'node:path';
import pino from 'pino';
import { DrainEndpoint } from '../../../../../runtime/mta/drain/endpoint';
import { encodeBatch, newRequestId, type DrainRecord } from '../../../../../runtime/mta/drain/protocol';
import { SeenIds, seenIdsPath } from '../../../../../runtime/mta/drain/seen-ids';
import { DestinationClient, parseDestination } from '../../../../../runtime/mta/drain/source/destination-client';
import { Distributor, type Batch } from '../../../../../runtime/mta/drain/source/distributor';
import { Journal, journalPath, readJournal, sentIn } from '../../../../../runtime/mta/drain/source/journal';
import { DrainHolds, RELEASE_AFTER_MS, heldAtStart, reconcileAtStart, writeClientSettings } from '../../../../../runtime/mta/drain/source/reconcile';
import { startDrainDestination } from '../../../../helpers/drain-destination';
import { parseConfig } from '../../../../../runtime/shared/config/load';
import { loadTls } from '../../../../../runtime/shared/tls-files';
import { testConfigYaml } from '../../../../helpers/config';
import { newSecret, proxyTls } from '../../../../helpers/proxy-fixtures';
import { tempDir } from '../../../../helpers/tmp';

const dir = tempDir();

test('held at start: what the destination has is removed at once; what it lacks is released only once the last request to it is old enough to have been committed', async () => {
  const tls = await proxyTls(dir);
  const secret = newSecret();
  const dest = await startDrainDestination({ key: tls.key, cert: tls.cert, secret });
  try {
    dest.queued.set('m1', { header: {} as never, body: Buffer.alloc(0) });
    const pp = join(dir, 'pp');
    const t0 = 1_700_000_000_000;
    const j = new Journal(journalPath(pp));
    j.append({ dest: dest.label, ids: ['m1', 'm2'], at: t0 });
    j.append({ dest: dest.label, ids: ['m3'], at: t0 - 10 });
    j.append({ removed: ['m3'], at: t0 });
    j.close();
    writeClientSettings(pp, { insecure: true });
    expect([...heldAtStart(pp)].sort()).toEqual(['m1', 'm2']);
    const calls: { remove: string[]; release: string[] }[] = [];
    let now = t0 + 1000;
    await reconcileAtStart({
      persistentPath: pp,
      nodeId: 'src',
      secret: () => secret,
      logger: pino({ level: 'silent' }),
      retryMs: 10,
      now: () => now,
      settle: async (remove, release) => {
        calls.push({ remove, release });
        now = t0 + RELEASE_AFTER_MS; // the next question comes late enough
      },
    });
    expect(calls).toEqual([
      { remove: ['m1'], release: [] },
      { remove: [], release: ['m2'] },
    ]);
    expect(heldAtStart(pp).size).toBe(0);
  } finally {
    await dest.close();
  }
});

// The real drain endpoint as the destination B, whose copy may move on (B drained to a third node) before the killed source A asks.
describe('in process, against a real drain endpoint whose ids move on', () => {
  const bDir = join(dir, 'b');
  let endpoint: DrainEndpoint;
  let seen: SeenIds;
  let label = '';
  const secret = newSecret();
  /** What B's spool took, by id (B's workers stand in: every record is queued). */
  const bSpool = new Set<string>();
  /** Every store at B, in order (an id twice: two copies). */
  const bStores: string[] = [];
  /** B not taking requests (stopping): `have` unanswered, asked again. */
  let bDown: string | undefined;

  beforeAll(async () => {
    const config = parseConfig(`${testConfigYaml()}drain: { accept_from: [127.0.0.1/32] }\n`).drain!;
    seen = await SeenIds.open(seenIdsPath(bDir), config.dedupeRetentionMs, { fsync: false });
    endpoint = new DrainEndpoint({
      config,
      nodeId: 'B',
      secrets: [secret],
      tls: await loadTls(undefined, bDir, 'localhost'),
      seen,
      store: async (records) => records.map((r) => (bSpool.add(r.header.id), bStores.push(r.header.id), { status: 'queued' as const })),
      unavailable: () => bDown,
      logger: pino({ level: 'silent' }),
    });
    label = `127.0.0.1:${await endpoint.listen({ address: '127.0.0.1', port: 0 })}`;
  });
  afterAll(async () => {
    await endpoint.close();
    await seen.close();
  });

  function message(id: string): DrainRecord {
    const body = Buffer.from('Subject: drained\r\n\r\nhello\r\n');
    return { header: { id, from: 'sender@shop.test', to: ['a@far.test'], received: 1, expires: Date.now() + 86_400_000, attempts: 0, via_original: 'smtp', size: body.length }, body };
  }

  /** Node `node` sends `id` to B as the distributor does (journaled first, with its request id); the answer is lost when `send` is false or ignored (the source was killed). */
  async function drainToB(node: string, pp: string, id: string, at: number, send = true): Promise<void> {
    const req = newRequestId();
    const j = new Journal(journalPath(pp));
    j.append({ dest: label, ids: [id], at, req });
    j.close();
    if (!send) return;
    const client = new DestinationClient(parseDestination(label), { secret, node, insecure: true, timeoutMs: 30_000, maxSockets: 1 });
    try {
      expect(await client.sendBatch(encodeBatch([message(id)]), [id], req)).toEqual({ kind: 'answered', results: [{ id, status: 'queued' }] });
    } finally {
      client.close();
    }
  }

  /** A's MTA started where its drain was killed, asking late enough to release: what it settled. */
  async function reconcileA(pp: string, t0: number, holds?: DrainHolds): Promise<{ remove: string[]; release: string[] }[]> {
    writeClientSettings(pp, { insecure: true });
    const calls: { remove: string[]; release: string[] }[] = [];
    await reconcileAtStart({
      holds,
      persistentPath: pp,
      nodeId: 'A',
      secret: () => secret,
      logger: pino({ level: 'silent' }),
      retryMs: 10,
      now: () => t0 + RELEASE_AFTER_MS,
      settle: async (remove, release) => void calls.push({ remove, release }),
    });
    return calls;
  }

  test('A -> B (killed before the answer), then B drained on to C: A asks B, which took that copy and passed it on, so A removes its own (C delivers the one copy)', async () => {
    const pp = join(dir, 'a1');
    const t0 = 1_700_000_000_000;
    await drainToB('A', pp, 'M-ONWARD', t0);
    expect(bSpool.has('M-ONWARD')).toBe(true);
    await seen.forget(['M-ONWARD']); // B drained on to C: LocalSpool.markDrained forgets the id first
    expect(await reconcileA(pp, t0)).toEqual([{ remove: ['M-ONWARD'], release: [] }]);
  });

  test('X -> B, B -> A, then A -> B killed before its request arrived: B took that id only from X, so A keeps and releases the one copy it holds', async () => {
    const pp = join(dir, 'a2');
    const t0 = 1_700_000_000_000;
    await drainToB('X', join(dir, 'x2'), 'M-BACK', t0);
    await seen.forget(['M-BACK']); // B drained it to A
    await drainToB('A', pp, 'M-BACK', t0, false);
    expect(await reconcileA(pp, t0)).toEqual([{ remove: [], release: ['M-BACK'] }]);
  });

  test('A -> B (killed before the answer), A started instead, then B drained back into A while A waits for its answer (duplicate: A holds it, so B drops its copy): A releases its copy and never removes it, though B took it in that request', async () => {
    const pp = join(dir, 'a3');
    const t0 = 1_700_000_000_000;
    await drainToB('A', pp, 'M-CYCLE', t0);
    // A's MTA, started instead of a rerun: its endpoint wired as primary.ts wires it; its spool holds M (held).
    const holds = new DrainHolds(pp);
    const releasedOnArrival: string[] = [];
    const aDir = join(dir, 'a3-endpoint');
    const aSeen = await SeenIds.open(seenIdsPath(aDir), 86_400_000, { fsync: false });
    const config = parseConfig(`${testConfigYaml()}drain: { accept_from: [127.0.0.1/32] }\n`).drain!;
    const a = new DrainEndpoint({
      config,
      nodeId: 'A',
      secrets: [secret],
      tls: await loadTls(undefined, aDir, 'localhost'),
      seen: aSeen,
      store: async (records) => records.map(() => ({ status: 'duplicate' as const })),
      arrived: (duplicate, queued) => holds.cameBack(duplicate, queued, async (back) => void releasedOnArrival.push(...back)),
      unavailable: () => undefined,
      logger: pino({ level: 'silent' }),
    });
    const client = new DestinationClient(parseDestination(`127.0.0.1:${await a.listen({ address: '127.0.0.1', port: 0 })}`), { secret, node: 'B', insecure: true, timeoutMs: 30_000, maxSockets: 1 });
    try {
      // A's reconcile has read its journal (M held, asked of B) and B cannot answer yet...
      bDown = 'B is draining itself';
      const settled = reconcileA(pp, t0, holds);
      // ... meanwhile B is drained into A.
      expect(await client.sendBatch(encodeBatch([message('M-CYCLE')]), ['M-CYCLE'], newRequestId())).toEqual({ kind: 'answered', results: [{ id: 'M-CYCLE', status: 'duplicate' }] });
      await seen.forget(['M-CYCLE']); // B's drain removes its copy on `duplicate`: A's is the only one now
      expect(releasedOnArrival).toEqual(['M-CYCLE']);
      bDown = undefined; // B answers (it took M in A's request): A must not remove the only copy
      expect((await settled).flatMap((c) => [...c.remove, ...c.release])).toEqual([]); // released on arrival, before
      expect(heldAtStart(pp).size).toBe(0);
    } finally {
      client.close();
      await a.close();
      await aSeen.close();
    }
  });

  /** A rerun of A's drain (not an MTA start): the batch its journal holds for B goes to B alone, naming the requests that sent it before (as run-drain builds it). */
  async function rerunA(pp: string, id: string): Promise<string[]> {
    const removed: string[] = [];
    const client = new DestinationClient(parseDestination(label), { secret, node: 'A', insecure: true, timeoutMs: 30_000, maxSockets: 1 });
    const journal = new Journal(journalPath(pp));
    try {
      const sent = sentIn(readJournal(journalPath(pp)), label);
      const held = new Map<string, Batch[]>([[label, [{ ids: [id], records: [message(id)], sent: sent.get(id) ?? [] }]]]);
      await new Distributor({ clients: [client], held, heldOnly: new Set([label]), nextBatch: async () => undefined, journal, remove: async (ids) => void removed.push(...ids), concurrency: 1, retryDelayMs: 0 }).run();
    } finally {
      journal.close();
      client.close();
    }
    return removed;
  }

  test('rerun: A -> B (killed before the answer), then B drained on to C: the resend is answered duplicate (taken in that earlier request), not queued at B a second time', async () => {
    const pp = join(dir, 'a4');
    await drainToB('A', pp, 'M-RERUN', 1_700_000_000_000);
    await seen.forget(['M-RERUN']); // B drained on to C
    expect(await rerunA(pp, 'M-RERUN')).toEqual(['M-RERUN']);
    expect(bStores.filter((id) => id === 'M-RERUN')).toHaveLength(1);
  });

  test('rerun: X -> B, B -> A, then A -> B killed before its request arrived: the resend is queued at B (it took the id only from X), the one copy moves', async () => {
    const pp = join(dir, 'a5');
    await drainToB('X', join(dir, 'x5'), 'M-RERUN-BACK', 1_700_000_000_000);
    await seen.forget(['M-RERUN-BACK']); // B drained it to A
    await drainToB('A', pp, 'M-RERUN-BACK', 1_700_000_000_000, false);
    expect(await rerunA(pp, 'M-RERUN-BACK')).toEqual(['M-RERUN-BACK']);
    expect(bStores.filter((id) => id === 'M-RERUN-BACK')).toHaveLength(2); // from X, gone on to A; now from A
  });
});

test('DrainHolds.cameBack: held ids drained back are journaled released (no answer removes them after); only the duplicate ones (the spool holds them) are handed to release, a queued one is a new copy scheduled already; ids not held are ignored', async () => {
  const pp = join(dir, 'holds');
  const j = new Journal(journalPath(pp));
  j.append({ dest: 'b:8443', ids: ['dup', 'new', 'stays'], at: 1, req: 'req-0000001' });
  j.close();
  const holds = new DrainHolds(pp);
  const released: string[][] = [];
  expect(await holds.cameBack(['dup', 'other'], ['new'], async (ids) => void released.push(ids))).toEqual(['dup', 'new']);
  expect(released).toEqual([['dup']]);
  expect([...heldAtStart(pp)]).toEqual(['stays']);
  expect(await holds.cameBack(['dup'], [], async (ids) => void released.push(ids))).toEqual([]);
  expect(released).toEqual([['dup']]);
});
