// The reconcile's settle (remove these held ids, release those) sent to the
// workers in chunks, one after another: each ask to a worker times out at 5 s
// (primary.ts), and a worker removes one id at a time with a synced write, so
// 40,000 ids in one ask timed out and the reconcile gave up until the next start.

/** Ids per ask: well inside one ask's timeout on a slow disk. */
export const SETTLE_CHUNK = 1_000;

/** Calls `ask` with at most `chunk` ids (remove and release together) at a time, in order; rejects on the first failure. */
export async function settleInChunks(
  remove: readonly string[],
  release: readonly string[],
  ask: (remove: string[], release: string[]) => Promise<void>,
  chunk = SETTLE_CHUNK,
): Promise<void> {
  const all: { id: string; remove: boolean }[] = [...remove.map((id) => ({ id, remove: true })), ...release.map((id) => ({ id, remove: false }))];
  for (let i = 0; i < all.length; i += chunk) {
    const part = all.slice(i, i + chunk);
    await ask(
      part.filter((x) => x.remove).map((x) => x.id),
      part.filter((x) => !x.remove).map((x) => x.id),
    );
  }
}
