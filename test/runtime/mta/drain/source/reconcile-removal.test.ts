// The reconcile's removal step against a batch that arrives while its workers
// are still removing (review s14g, F1): the removed ids stay held (the batch
// waits for the reconcile's lock) until the removal is done and journaled, and
// a removal that fails leaves them uncertain: never `duplicate`, `queued` or
// "yes" for them until the next start. Two drain nodes on 127.0.0.1 (drain-nodes.ts).
import pino from 'pino';
import { DestinationClient, parseDestination } from '../../../../../runtime/mta/drain/source/destination-client';
import { reconcileAtStart, RELEASE_AFTER_MS } from '../../../../../runtime/mta/drain/source/reconcile';
import { heldAtStart } from '../../../../../runtime/mta/drain/source/holds';
import { drainKilled, drainOnce, startDrainNode } from '../../../../helpers/drain-nodes';
import { newSecret, waitUntil } from '../../../../helpers/proxy-fixtures';
import { tempDir } from '../../../../helpers/tmp';

const dir = tempDir();
const secret = newSecret();
const t0 = 1_700_000_000_000;
const silent = pino({ level: 'silent' });

test('A says yes to B\'s reconcile, then is drained and sends M to B while B\'s workers are still removing: the batch waits for the removal, and B queues M anew (a copy is left)', async () => {
  const a = await startDrainNode(dir, 'a1', { secret });
  const b = await startDrainNode(dir, 'b1', { secret });
  let settling = false;
  let gateOpen!: () => void;
  const gate = new Promise<void>((r) => (gateOpen = r));
  try {
    // B (origin of M) drains M to A: A queues it; B is killed before the answer, and B's MTA starts holding M for A.
    b.spool.add('M');
    await drainKilled(b, a, 'M', t0, secret, true);
    b.start();
    const takeHeld = jest.spyOn(b.holds!, 'takeHeld');
    const reconciled = reconcileAtStart({
      persistentPath: b.pp,
      nodeId: 'b1',
      secret: () => secret,
      logger: silent,
      retryMs: 10,
      now: () => t0 + RELEASE_AFTER_MS,
      holds: b.holds,
      forget: (ids) => b.seen.forget(ids),
      // The workers remove one id at a time with a synced write: M's turn comes after the gate.
      settle: async (remove, release) => {
        settling = true;
        await gate;
        for (const id of remove) b.spool.delete(id);
        b.released.push(...release);
      },
    });
    await waitUntil(() => settling);
    expect(b.holds!.isHeld('M')).toBe(true); // being removed: still held
    expect(b.spool.has('M')).toBe(true);

    // A is drained now: its batch with M goes to B. It takes the lock (held), so it waits for the removal.
    let done = false;
    const sending = drainOnce(a, b, 'M', secret).finally(() => (done = true));
    await waitUntil(() => done || takeHeld.mock.calls.length > 0);
    gateOpen();
    const sent = await sending;
    await reconciled;
    expect(a.spool.has('M') || b.spool.has('M')).toBe(true);
    expect(sent).toMatchObject({ kind: 'answered', results: [{ id: 'M', status: 'queued' }] });
    expect(b.spool.has('M')).toBe(true); // stored anew after the removal
    expect(b.holds!.isHeld('M')).toBe(false);
  } finally {
    gateOpen();
    for (const n of [a, b]) await n.close();
  }
});

test('a removal that fails part-way leaves its ids uncertain: `have` answers unknown and a batch a 500, never yes or `duplicate`, and the journal is not retired (the next start asks again)', async () => {
  const a = await startDrainNode(dir, 'a2', { secret });
  const b = await startDrainNode(dir, 'b2', { secret });
  try {
    b.spool.add('M');
    await drainKilled(b, a, 'M', t0, secret, true);
    b.start();
    await b.seen.add(['M']); // B's dedupe store had it too (a resend B queued earlier)
    const failed = reconcileAtStart({
      persistentPath: b.pp,
      nodeId: 'b2',
      secret: () => secret,
      logger: silent,
      retryMs: 10,
      now: () => t0 + RELEASE_AFTER_MS,
      holds: b.holds,
      forget: async () => undefined, // kept in B's dedupe store: a "yes" would come from it
      settle: async () => {
        throw new Error('worker did not answer drain-settle');
      },
    });
    await expect(failed).rejects.toThrow('drain-settle');
    expect(await b.holds!.answer(['M'], () => true)).toEqual({ have: [], unknown: ['M'] });
    expect(b.holds!.isHeld('M')).toBe(true); // a batch naming it takes the lock
    const c = new DestinationClient(parseDestination(b.label), { secret, node: 'a2', insecure: true, timeoutMs: 30_000, maxSockets: 1 });
    try {
      expect(await c.have(['M'])).toEqual({ have: new Set(), unknown: new Set(['M']) });
    } finally {
      c.close();
    }
    const sent = await drainOnce(a, b, 'M', secret);
    expect(sent).toMatchObject({ kind: 'retry' });
    expect(a.spool.has('M')).toBe(true); // A keeps its copy
    expect(heldAtStart(b.pp).has('M')).toBe(true); // the next start reads the journal and asks again
  } finally {
    for (const n of [a, b]) await n.close();
  }
});
