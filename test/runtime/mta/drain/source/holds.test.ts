// DrainHolds (holds.ts): a node asked about a message it holds itself for an
// interrupted drain of its own answers "yes" only once it journaled that it
// keeps it; when that journal write fails (a full disk) it answers unknown
// and keeps it held, and the asker removes nothing. The same for a batch it
// answers `duplicate` for such a message (the sender then removes its copy),
// and such a batch is looked up only under the reconcile's lock (a removal
// before it: queued, not duplicate). A decision costs the ids it is about: the
// journal is read once, at start. Real endpoints over HTTPS on 127.0.0.1
// (drain-nodes.ts), A's persistent path on a small tmpfs for the full disk.
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { DrainHolds, heldAtStart } from '../../../../../runtime/mta/drain/source/holds';
import { Journal, journalPath } from '../../../../../runtime/mta/drain/source/journal';
import { RELEASE_AFTER_MS, reconcileAtStart, writeClientSettings } from '../../../../../runtime/mta/drain/source/reconcile';
import { startDrainDestination } from '../../../../helpers/drain-destination';
import { drainKilled, drainOnce, reconcileNode, startDrainNode } from '../../../../helpers/drain-nodes';
import { newSecret, proxyTls, waitUntil } from '../../../../helpers/proxy-fixtures';
import { fillVolume, mountTmpfs } from '../../../../helpers/tmpfs';
import { tempDir } from '../../../../helpers/tmp';

// The module itself, not an import's copy of it: the spy below must see the journal's own reads.
const fs = require('node:fs') as typeof import('node:fs');

const dir = tempDir();
const secret = newSecret();
const t0 = 1_700_000_000_000;

test('the journal write that would keep a held copy fails: "unknown", still held here, nothing removed by the asker; once it can be written, kept here and removed there', async () => {
  const vol = mountTmpfs('volley-holds-full-', '256k');
  const b = await startDrainNode(dir, 'b', { secret });
  const a = await startDrainNode(dir, 'a', { secret, persistentPath: join(vol.mnt, 'a') });
  try {
    b.spool.add('M');
    await drainKilled(b, a, 'M', t0, secret, true); // A queued M; B killed before the answer: B holds M, maybe at A
    await drainKilled(a, b, 'M', t0, secret, false); // A killed before its request reached B: A holds M, maybe at B
    // A's journal ends on a page boundary, then the volume fills: its next line cannot be written at all.
    const file = journalPath(a.pp);
    const j = new Journal(file);
    const bare = JSON.stringify({ removed: [''], at: 0 }).length + 1;
    j.append({ removed: ['x'.repeat(4096 - statSync(file).size - bare)], at: 0 });
    j.close();
    expect(statSync(file).size).toBe(4096);
    a.start();
    fillVolume(join(vol.mnt, 'filler'));

    const reconciled = reconcileNode(b, secret, t0); // B asks A about M, again and again while A cannot say
    await waitUntil(() => a.answers.length >= 1);
    expect(a.answers[0]).toEqual({ have: [], unknown: ['M'] });
    await waitUntil(() => a.answers.length >= 2, 5_000, () => JSON.stringify(a.answers)); // asked again
    expect(a.answers[1]).toEqual({ have: [], unknown: ['M'] });
    expect([a.spool.has('M'), b.spool.has('M')]).toEqual([true, true]);
    expect([a.released, b.released]).toEqual([[], []]);
    expect([...heldAtStart(a.pp)]).toEqual(['M']);
    expect([...heldAtStart(b.pp)]).toEqual(['M']);

    rmSync(join(vol.mnt, 'filler'));
    await reconciled;
    expect(a.answers.at(-1)).toEqual({ have: ['M'], unknown: [] });
    expect([a.spool.has('M'), b.spool.has('M')]).toEqual([true, false]);
    expect(a.released).toEqual(['M']);
    expect(heldAtStart(a.pp).size + heldAtStart(b.pp).size).toBe(0);
  } finally {
    await vol.release(() => a.close(), () => b.close());
  }
});

describe('a batch answered `duplicate` for a message held here for this node\'s own reconcile (the sender then removes its copy)', () => {
  test('L1: X->B; B->A (A queued it, B killed before the answer); A->B (A killed before it arrived); B starts, A is rerun instead and retired: B keeps its copy, journaled released and delivered, before it answers duplicate, and its reconcile has nothing left to ask A', async () => {
    const x = await startDrainNode(dir, 'l1-x', { secret });
    const b = await startDrainNode(dir, 'l1-b', { secret });
    const a = await startDrainNode(dir, 'l1-a', { secret });
    try {
      await drainKilled(x, b, 'M', t0, secret, true); // B queued M (its dedupe store has it)
      await drainKilled(b, a, 'M', t0, secret, true); // B holds M for A
      await drainKilled(a, b, 'M', t0, secret, false); // A holds M for B
      b.start(); // B's MTA starts (its reconcile would ask A); A is rerun instead, its MTA stopped

      // A's rerun sends M to B alone (journaled to it): B answers from its dedupe store.
      expect(await drainOnce(a, b, 'M', secret)).toMatchObject({ kind: 'answered', results: [{ id: 'M', status: 'duplicate' }] });
      expect(b.released).toEqual(['M']);
      expect([...heldAtStart(b.pp)]).toEqual([]);
      expect([a.spool.has('M'), b.spool.has('M')]).toEqual([false, true]);
      await a.close(); // exit 0, queue empty: retired, its endpoint gone

      await reconcileNode(b, secret, t0); // nothing held: it asks nobody (A is gone) and ends
      expect(b.spool.has('M')).toBe(true);
      expect(b.released).toEqual(['M']);
      expect(heldAtStart(b.pp).size).toBe(0);
    } finally {
      for (const n of [x, b]) await n.close();
    }
  });

  test('the journal write that would keep the copy fails: no `duplicate` (500), still held here, the sender keeps its copy; sent again once it can be written, kept here and answered duplicate', async () => {
    const vol = mountTmpfs('volley-holds-dup-full-', '256k');
    const x = await startDrainNode(dir, 'full-x', { secret });
    const b = await startDrainNode(dir, 'full-b', { secret, persistentPath: join(vol.mnt, 'b') });
    const a = await startDrainNode(dir, 'full-a', { secret });
    try {
      await drainKilled(x, b, 'M', t0, secret, true); // B queued M (its dedupe store has it)
      await drainKilled(b, a, 'M', t0, secret, true); // B holds M for A; A queued it
      // B's journal ends on a page boundary, then the volume fills: its next line cannot be written at all.
      const file = journalPath(b.pp);
      const j = new Journal(file);
      const bare = JSON.stringify({ removed: [''], at: 0 }).length + 1;
      j.append({ removed: ['x'.repeat(4096 - statSync(file).size - bare)], at: 0 });
      j.close();
      expect(statSync(file).size).toBe(4096);
      b.start();
      fillVolume(join(vol.mnt, 'filler'));

      expect(await drainOnce(a, b, 'M', secret)).toMatchObject({ kind: 'retry', untaken: false }); // A drained into B
      expect([a.spool.has('M'), b.spool.has('M')]).toEqual([true, true]);
      expect(b.released).toEqual([]);
      expect([...heldAtStart(b.pp)]).toEqual(['M']);

      rmSync(join(vol.mnt, 'filler'));
      expect(await drainOnce(a, b, 'M', secret)).toMatchObject({ kind: 'answered', results: [{ id: 'M', status: 'duplicate' }] });
      expect([a.spool.has('M'), b.spool.has('M')]).toEqual([false, true]);
      expect(b.released).toEqual(['M']);
      expect(heldAtStart(b.pp).size).toBe(0);
    } finally {
      await vol.release(() => b.close(), () => a.close(), () => x.close());
    }
  });

  test('L2: B->A (A queued it, the answer lost); B starts and A answers its question "yes", the answer slow on the way back; meanwhile A is drained and its batch reaches B, answered `duplicate` from B\'s spool: B keeps its copy first, so the late "yes" removes nothing', async () => {
    let holdAnswer = false;
    let answerGoes!: () => void;
    const answerHeld = new Promise<void>((resolve) => (answerGoes = resolve));
    const a = await startDrainNode(dir, 'l2-a', { secret, afterAnswer: async () => void (holdAnswer && (await answerHeld)) });
    const b = await startDrainNode(dir, 'l2-b', { secret });
    try {
      b.spool.add('M'); // B's own message (SMTP): in its spool, not in its dedupe store
      await drainKilled(b, a, 'M', t0, secret, true);
      b.start();

      holdAnswer = true;
      const reconciled = reconcileNode(b, secret, t0); // asks A: "yes" (A has M), held on the way back
      await waitUntil(() => a.answers.length >= 1);
      expect(a.answers[0]).toEqual({ have: ['M'], unknown: [] });

      // A is drained (volley drain on A): M reaches B, which finds it in its spool.
      expect(await drainOnce(a, b, 'M', secret)).toMatchObject({ kind: 'answered', results: [{ id: 'M', status: 'duplicate' }] });
      expect(b.released).toEqual(['M']);
      expect(a.spool.has('M')).toBe(false);

      answerGoes(); // A's "yes" reaches B now
      await reconciled;
      expect(b.spool.has('M')).toBe(true);
      expect(b.released).toEqual(['M']);
      expect(heldAtStart(b.pp).size).toBe(0);
    } finally {
      answerGoes();
      for (const n of [a, b]) await n.close();
    }
  });

  test('a held id whose copy here is gone (purged) comes back in a batch while a "yes" about it is on the way: queued, and kept, so that late "yes" removes nothing', async () => {
    let holdAnswer = false;
    let answerGoes!: () => void;
    const answerHeld = new Promise<void>((resolve) => (answerGoes = resolve));
    const a = await startDrainNode(dir, 'gone-a', { secret, afterAnswer: async () => void (holdAnswer && (await answerHeld)) });
    const b = await startDrainNode(dir, 'gone-b', { secret });
    try {
      b.spool.add('M');
      await drainKilled(b, a, 'M', t0, secret, true);
      b.start();
      b.spool.delete('M'); // held, but purged here by an operator

      holdAnswer = true;
      const reconciled = reconcileNode(b, secret, t0); // A: "yes", held on the way back
      await waitUntil(() => a.answers.length >= 1);
      expect(await drainOnce(a, b, 'M', secret)).toMatchObject({ kind: 'answered', results: [{ id: 'M', status: 'queued' }] });
      expect(b.released).toEqual(['M']);
      answerGoes();
      await reconciled;
      expect([a.spool.has('M'), b.spool.has('M')]).toEqual([false, true]);
    } finally {
      answerGoes();
      for (const n of [a, b]) await n.close();
    }
  });

  test('L2, the lock busy: B\'s removal on A\'s "yes" waits for the lock, and A\'s batch with M arrives while it waits: the batch is looked up only after that removal, so M is queued at B, not answered duplicate', async () => {
    const a = await startDrainNode(dir, 'l2lock-a', { secret });
    const b = await startDrainNode(dir, 'l2lock-b', { secret });
    let unlock!: () => void;
    const locked = new Promise<void>((resolve) => (unlock = resolve));
    try {
      b.spool.add('M');
      await drainKilled(b, a, 'M', t0, secret, true);
      b.start();
      const run = jest.spyOn(b.holds!, 'run');
      void b.holds!.run(() => locked); // the lock busy (another decision, a slow release to the workers)

      const reconciled = reconcileNode(b, secret, t0); // A says "yes"; B's removal waits for the lock
      await waitUntil(() => run.mock.calls.length >= 2);
      expect(a.answers[0]).toEqual({ have: ['M'], unknown: [] });

      const sending = drainOnce(a, b, 'M', secret); // A drained: its batch with M reaches B
      await waitUntil(() => run.mock.calls.length >= 3 || !a.spool.has('M'));
      unlock();
      await reconciled;
      expect(await sending).toMatchObject({ kind: 'answered', results: [{ id: 'M', status: 'queued' }] });
      expect([a.spool.has('M'), b.spool.has('M')]).toEqual([false, true]);
      expect(b.seen.has('M')).toBe(true);
    } finally {
      unlock();
      for (const n of [a, b]) await n.close();
    }
  });
});

test('a decision costs the ids it is about: once the holds are built, a "yes", a `duplicate` and the reconcile\'s removals and releases never read the journal again', async () => {
  const tls = await proxyTls(join(dir, 'cost-tls'));
  const dest = await startDrainDestination({ key: tls.key, cert: tls.cert, secret });
  const read = jest.spyOn(fs, 'readFileSync');
  try {
    const pp = join(dir, 'cost');
    const file = journalPath(pp);
    const j = new Journal(file);
    const ids: string[] = [];
    for (let batch = 0; batch < 50; batch++) {
      const sent = Array.from({ length: 200 }, (_, i) => `h${batch * 200 + i}`);
      ids.push(...sent);
      j.append({ dest: dest.label, ids: sent, at: t0 });
    }
    j.close();
    writeClientSettings(pp, { insecure: true });
    for (const id of ids.slice(0, 100)) dest.queued.set(id, { header: {} as never, body: Buffer.alloc(0) });
    const released: string[] = [];
    const removed: string[] = [];
    const holds = new DrainHolds({ persistentPath: pp, release: async (kept) => void released.push(...kept), logger: pino({ level: 'silent' }) });
    const journalReads = (): number => read.mock.calls.filter(([path]) => path === file).length;
    const atStart = journalReads();
    expect(atStart).toBe(1); // read once, to build the holds (and the spy sees the journal's reads)

    expect(await holds.answer(['h9000'], () => true)).toEqual({ have: ['h9000'], unknown: [] }); // another node asks: kept
    expect(journalReads() - atStart).toBe(0);
    expect(await holds.takeHeld(async () => ['h9001'], (taken) => taken)).toEqual({ result: ['h9001'], cannot: [] }); // a batch answered duplicate: kept
    await reconcileAtStart({
      persistentPath: pp,
      nodeId: 'src',
      secret: () => secret,
      logger: pino({ level: 'silent' }),
      now: () => t0 + RELEASE_AFTER_MS,
      holds,
      forget: async () => undefined,
      settle: async (remove, release) => {
        removed.push(...remove);
        released.push(...release);
      },
    });
    expect(journalReads() - atStart).toBe(0);
    expect(removed.sort()).toEqual(ids.slice(0, 100).sort());
    expect(released).toHaveLength(ids.length - 100);
    expect(new Set(released).size).toBe(ids.length - 100);
    holds.close();
    expect(fs.existsSync(file)).toBe(false); // settled: retired
  } finally {
    read.mockRestore();
    await dest.close();
  }
});

test('grouping held ids by destination (byDestination, and keeping a batch\'s ids) walks each id once: no copy of the list per id (quadratic: 11 s for 40,000 ids on the primary\'s loop)', async () => {
  const pp = join(dir, 'linear');
  const n = 5000;
  const ids = Array.from({ length: n }, (_, i) => `q${i}`);
  const j = new Journal(journalPath(pp));
  j.append({ dest: '127.0.0.1:1', ids, at: t0 });
  j.close();
  const released: string[] = [];
  const holds = new DrainHolds({ persistentPath: pp, release: async (kept) => void released.push(...kept), logger: pino({ level: 'silent' }) });
  // Every spread of an array walks it with its iterator (and so does destructuring [id, dest]): a list
  // copied per id walks n^2/2 elements, a pass over the ids a few per id.
  const proto = Array.prototype as unknown as Record<symbol, () => Iterator<unknown>>;
  const original = proto[Symbol.iterator];
  let walked = 0;
  proto[Symbol.iterator] = function (this: unknown[]) {
    const it = original.call(this);
    return { next: () => (walked++, it.next()), [Symbol.iterator]() { return this; } } as Iterator<unknown>;
  };
  let by: Map<string, string[]>;
  let walkedByDestination: number;
  try {
    by = holds.byDestination();
    walkedByDestination = walked;
    walked = 0;
    await holds.takeHeld(async () => ids, (taken) => taken);
  } finally {
    proto[Symbol.iterator] = original;
  }
  expect(by.get('127.0.0.1:1')).toHaveLength(n);
  expect(walkedByDestination).toBeLessThan(10 * n);
  expect(walked).toBeLessThan(10 * n);
  expect(released).toHaveLength(n);
  holds.close();
});
