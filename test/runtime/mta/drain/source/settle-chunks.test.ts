// settleInChunks (settle-chunks.ts): a settle of more ids than one ask may
// carry goes to the workers as several asks, one after another, each within
// the chunk size, every id exactly once and each to its own side (remove or release).
import { SETTLE_CHUNK, settleInChunks } from '../../../../../runtime/mta/drain/source/settle-chunks';

test('40,000 removals and 2,500 releases: one ask per chunk of at most SETTLE_CHUNK ids, never two at once, every id once on its own side', async () => {
  const remove = Array.from({ length: 40_000 }, (_, i) => `r${i}`);
  const release = Array.from({ length: 2_500 }, (_, i) => `l${i}`);
  const asks: { remove: string[]; release: string[] }[] = [];
  let running = 0;
  let overlapped = false;
  await settleInChunks(remove, release, async (rm, rel) => {
    overlapped ||= running > 0;
    running++;
    asks.push({ remove: rm, release: rel });
    await Promise.resolve();
    running--;
  });
  expect(overlapped).toBe(false);
  expect(SETTLE_CHUNK).toBe(1_000); // a worker removes 1,000 ids well inside one ask's 5 s
  expect(asks).toHaveLength(43);
  for (const a of asks) expect(a.remove.length + a.release.length).toBeLessThanOrEqual(SETTLE_CHUNK);
  expect(asks.flatMap((a) => a.remove)).toEqual(remove);
  expect(asks.flatMap((a) => a.release)).toEqual(release);
});

test('nothing to settle: no ask; a failed ask stops the rest and rejects (the reconcile marks the removal uncertain)', async () => {
  const asked: string[][] = [];
  await settleInChunks([], [], async (rm) => void asked.push(rm));
  expect(asked).toEqual([]);
  const ids = Array.from({ length: 2_500 }, (_, i) => `r${i}`);
  await expect(
    settleInChunks(ids, [], async (rm) => {
      asked.push(rm);
      if (asked.length === 2) throw new Error('worker did not answer drain-settle');
    }),
  ).rejects.toThrow('drain-settle');
  expect(asked).toHaveLength(2);
});
