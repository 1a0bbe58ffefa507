import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalSpool } from '../../../../../runtime/mta/drain/source/local-spool';
import { SeenIds, seenIdsPath } from '../../../../../runtime/mta/drain/seen-ids';
import { SpoolPartition } from '../../../../../runtime/mta/spool/partition';

let pp: string;
beforeEach(() => (pp = mkdtempSync(join(tmpdir(), 'volley-local-spool-'))));
afterEach(() => rmSync(pp, { recursive: true, force: true }));

test('a message this node took in by drain and drains away again is forgotten by its dedupe store, so a later drain back here queues it instead of answering duplicate', async () => {
  // This node took X in by drain earlier: X is queued and in seen.log.
  const partition = await SpoolPartition.open({ dir: join(pp, 'spool', 'p000') });
  await partition.appendMessage({ id: 'X', from: 'a@shop.test', to: ['b@x.test'], received: Date.now(), via: 'drain', size: 3 }, Buffer.from('x\r\n'));
  await partition.appendMessage({ id: 'Y', from: 'a@shop.test', to: ['c@x.test'], received: Date.now(), via: 'drain', size: 3 }, Buffer.from('y\r\n'));
  await partition.close();
  const before = await SeenIds.open(seenIdsPath(pp), 86_400_000);
  await before.add(['X', 'Y']);
  await before.close();

  // `volley drain` moves X to another node (acknowledged); Y stays.
  const spool = await LocalSpool.open(pp, 86_400_000);
  await spool.markDrained(['X']);
  expect(spool.has('X')).toBe(false);
  await spool.close();

  const after = await SeenIds.open(seenIdsPath(pp), 86_400_000);
  expect({ X: after.has('X'), Y: after.has('Y') }).toEqual({ X: false, Y: true });
  await after.close();
});
