// DrainHolds (holds.ts): a node asked about a message it holds itself for an
// interrupted drain of its own answers "yes" only once it journaled that it
// keeps it; when that journal write fails (a full disk) it answers unknown
// and keeps it held, and the asker removes nothing. Real endpoints over HTTPS
// on 127.0.0.1 (drain-nodes.ts), A's persistent path on a small tmpfs.
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { heldAtStart } from '../../../../../runtime/mta/drain/source/holds';
import { Journal, journalPath } from '../../../../../runtime/mta/drain/source/journal';
import { drainKilled, reconcileNode, startDrainNode } from '../../../../helpers/drain-nodes';
import { newSecret, waitUntil } from '../../../../helpers/proxy-fixtures';
import { fillVolume, mountTmpfs } from '../../../../helpers/tmpfs';
import { tempDir } from '../../../../helpers/tmp';

const dir = tempDir();
const secret = newSecret();
const t0 = 1_700_000_000_000;

test('the journal write that would keep a held copy fails: "unknown", still held here, nothing removed by the asker; once it can be written, kept here and removed there', async () => {
  const fs = mountTmpfs('volley-holds-full-', '256k');
  const b = await startDrainNode(dir, 'b', { secret });
  const a = await startDrainNode(dir, 'a', { secret, persistentPath: join(fs.mnt, 'a') });
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
    fillVolume(join(fs.mnt, 'filler'));

    const reconciled = reconcileNode(b, secret, t0); // B asks A about M, again and again while A cannot say
    await waitUntil(() => a.answers.length >= 1);
    expect(a.answers[0]).toEqual({ have: [], unknown: ['M'] });
    await waitUntil(() => a.answers.length >= 2, 5_000, () => JSON.stringify(a.answers)); // asked again
    expect(a.answers[1]).toEqual({ have: [], unknown: ['M'] });
    expect([a.spool.has('M'), b.spool.has('M')]).toEqual([true, true]);
    expect([a.released, b.released]).toEqual([[], []]);
    expect([...heldAtStart(a.pp)]).toEqual(['M']);
    expect([...heldAtStart(b.pp)]).toEqual(['M']);

    rmSync(join(fs.mnt, 'filler'));
    await reconciled;
    expect(a.answers.at(-1)).toEqual({ have: ['M'], unknown: [] });
    expect([a.spool.has('M'), b.spool.has('M')]).toEqual([true, false]);
    expect(a.released).toEqual(['M']);
    expect(heldAtStart(a.pp).size + heldAtStart(b.pp).size).toBe(0);
  } finally {
    await fs.release(() => a.close(), () => b.close());
  }
});
