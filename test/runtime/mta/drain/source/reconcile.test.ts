// An MTA started where a drain was killed: what it asks the destination and
// what it removes or releases, against a test destination on 127.0.0.1; and
// two such nodes asking each other about one message (drain-nodes.ts).
import { join } from 'node:path';
import pino from 'pino';
import { Journal, journalPath } from '../../../../../runtime/mta/drain/source/journal';
import { RELEASE_AFTER_MS, heldAtStart, reconcileAtStart, writeClientSettings } from '../../../../../runtime/mta/drain/source/reconcile';
import { startDrainDestination } from '../../../../helpers/drain-destination';
import { drainKilled, reconcileNode, startDrainNode, type DrainNode } from '../../../../helpers/drain-nodes';
import { newSecret, proxyTls, waitUntil } from '../../../../helpers/proxy-fixtures';
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

describe('two nodes each holding the other\'s copy (X->B taken; B->A taken, B killed before the answer; A->B, A killed before it arrived)', () => {
  const t0 = 1_700_000_000_000;
  const secret = newSecret();

  /** X, B and A after that sequence: A and B both hold M, each for the other, and both have it in their dedupe store. */
  async function mutual(name: string, options: { earlierB?: boolean; beforeAnswer?: () => Promise<void> } = {}): Promise<{ x: DrainNode; a: DrainNode; b: DrainNode }> {
    const x = await startDrainNode(dir, `${name}-x`, { secret });
    const b = await startDrainNode(dir, `${name}-b`, { secret, earlier: options.earlierB, beforeAnswer: options.beforeAnswer });
    const a = await startDrainNode(dir, `${name}-a`, { secret, beforeAnswer: options.beforeAnswer });
    await drainKilled(x, b, 'M', t0, secret, true); // X is not reconciled here: its drain's copy is B's
    b.spool.add('M');
    await drainKilled(b, a, 'M', t0, secret, true);
    await drainKilled(a, b, 'M', t0, secret, false);
    expect([a.spool.has('M'), b.spool.has('M'), a.seen.has('M'), b.seen.has('M')]).toEqual([true, true, true, true]);
    a.start();
    b.start();
    return { x, a, b };
  }

  test('asked one after the other: one copy is left, and delivered', async () => {
    const { x, a, b } = await mutual('seq');
    try {
      await reconcileNode(a, secret, t0); // A asks B: B keeps its copy (journaled released) and says yes; A removes and forgets
      await reconcileNode(b, secret, t0); // B settled nothing left: its copy was released when it answered
      expect([a.spool.has('M'), b.spool.has('M')]).toEqual([false, true]);
      expect(b.released).toEqual(['M']);
      expect(a.seen.has('M')).toBe(false);
    } finally {
      for (const n of [x, a, b]) await n.close();
    }
  });

  test('a node of an earlier release answers from its dedupe store alone: the copy this node removed on its word is forgotten, so it answers "no" when asked back, and one copy is left', async () => {
    const { x, a, b } = await mutual('earlier', { earlierB: true });
    try {
      await reconcileNode(a, secret, t0); // B (earlier) says yes without keeping: A removes M and forgets it
      await reconcileNode(b, secret, t0); // B asks A: "no" -> B delivers its copy
      expect([a.spool.has('M'), b.spool.has('M')]).toEqual([false, true]);
      expect(b.released).toEqual(['M']);
      expect(a.seen.has('M')).toBe(false);
      expect(a.answers).toEqual([{ have: [], unknown: [] }]);
    } finally {
      for (const n of [x, a, b]) await n.close();
    }
  });

  test('asked while its reconcile is removing the copy on the other\'s word: the answer waits for that decision and is "no", so the other keeps the last copy', async () => {
    let asked = 0;
    const { x, a, b } = await mutual('midway', { earlierB: true, beforeAnswer: async () => void asked++ });
    let forgetting = false;
    let goOn!: () => void;
    const held = new Promise<void>((resolve) => (goOn = resolve));
    try {
      const removing = reconcileNode(a, secret, t0, async () => {
        forgetting = true;
        await held;
      }); // B (earlier) says yes: A decides to remove, and is held before it forgets
      await waitUntil(() => forgetting);
      const asking = reconcileNode(b, secret, t0); // B asks A meanwhile
      await waitUntil(() => asked === 1);
      goOn();
      await Promise.all([removing, asking]);
      expect([a.spool.has('M'), b.spool.has('M')]).toEqual([false, true]);
      expect([a.released, b.released]).toEqual([[], ['M']]);
      expect(a.answers).toEqual([{ have: [], unknown: [] }]);
    } finally {
      goOn();
      for (const n of [x, a, b]) await n.close();
    }
  });

  test('asked at the same time (both questions in before either is answered): each keeps its copy (a duplicate), never none', async () => {
    let asked = 0;
    let bothAsked!: () => void;
    const gate = new Promise<void>((resolve) => (bothAsked = resolve));
    const beforeAnswer = async (): Promise<void> => {
      if (++asked === 2) bothAsked();
      await gate;
    };
    const { x, a, b } = await mutual('simul', { beforeAnswer });
    try {
      await Promise.all([reconcileNode(a, secret, t0), reconcileNode(b, secret, t0)]);
      expect([a.spool.has('M'), b.spool.has('M')]).toEqual([true, true]);
      expect(asked).toBe(2);
      expect([a.released, b.released]).toEqual([['M'], ['M']]);
      expect(heldAtStart(a.pp).size + heldAtStart(b.pp).size).toBe(0);
    } finally {
      for (const n of [x, a, b]) await n.close();
    }
  });
});
