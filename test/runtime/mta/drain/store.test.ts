// Storing a drained batch under a sync HA mirror: a drained message is not
// deliverable here (not in the partition's entries(), not scheduled) until
// the mirror's barrier answered; refused, it is withdrawn and reported
// unavailable, so the source keeps (and alone delivers) its copy;
// the same id sent again meanwhile is `unknown` (send it here again), not
// `duplicate`, which would let the source drop its copy of a withdrawn one.
import { join } from 'node:path';
import { storeDrained } from '../../../../runtime/mta/drain/store';
import type { StoreOutcome } from '../../../../runtime/mta/drain/endpoint';
import { Intake } from '../../../../runtime/mta/intake/intake';
import { Spool } from '../../../../runtime/mta/spool/spool';
import type { SpoolEntry } from '../../../../runtime/mta/spool/types';
import { testConfig } from '../../../helpers/config';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir('volley-drain-store-');

test('under a sync mirror a drained message waits out of delivery\'s sight for its barrier; refused, it is withdrawn and never scheduled', async () => {
  const spool = await Spool.open({ root: join(dir, 'node'), worker: 0, workers: 1, fsync: false });
  const barriers: { release: (err?: Error) => void }[] = [];
  const intake = new Intake(spool.home, testConfig({ relayFrom: ['127.0.0.0/8'] }), {
    barrier: () => new Promise<string>((resolve, reject) => barriers.push({ release: (err) => (err ? reject(err) : resolve('sync')) })),
  });
  const scheduled: SpoolEntry[] = [];
  const record = (id: string) => ({
    header: { id, from: 'a@example.test', to: [`${id}@x.test`], received: Date.now(), expires: Date.now() + 86_400_000, attempts: 1, via_original: 'smtp' as const, size: 3 },
    body: Buffer.from('x\r\n'),
  });
  try {
    const refused = storeDrained(spool, intake, (e) => scheduled.push(e), [record('refused')]);
    await waitUntil(() => barriers.length === 1 && spool.home.size === 1, 5_000);
    expect([...spool.home.entries()]).toEqual([]);
    barriers[0].release(Object.assign(new Error('sync_timeout'), { code: 'EMIRRORSYNC' }));
    // Before the refusal goes out, intake asks one more barrier: for the withdrawal's done record.
    await waitUntil(() => barriers.length === 2, 5_000);
    barriers[1].release();
    const [out] = (await refused) as StoreOutcome[];
    expect(out.status).toBe('unavailable');
    expect(spool.home.size).toBe(0);

    const queued = storeDrained(spool, intake, (e) => scheduled.push(e), [record('kept')]);
    await waitUntil(() => barriers.length === 3 && spool.home.size === 1, 5_000);
    expect([...spool.home.entries()]).toEqual([]);
    barriers[2].release();
    expect(await queued).toEqual([{ status: 'queued' }]);
    expect([...spool.home.entries()].map((e) => e.id)).toEqual(['kept']);
    expect(scheduled.map((e) => e.id)).toEqual(['kept']);
  } finally {
    for (const b of barriers) b.release();
    await spool.close();
  }
});

test('the same id again while its first copy still waits for the mirror is not answered duplicate: that copy may yet be withdrawn, and the source would have dropped its own', async () => {
  const spool = await Spool.open({ root: join(dir, 'again'), worker: 0, workers: 1, fsync: false });
  const barriers: { release: (err?: Error) => void }[] = [];
  const intake = new Intake(spool.home, testConfig({ relayFrom: ['127.0.0.0/8'] }), {
    barrier: () => new Promise<string>((resolve, reject) => barriers.push({ release: (err) => (err ? reject(err) : resolve('sync')) })),
  });
  const record = {
    header: { id: 'twice', from: 'a@example.test', to: ['b@x.test'], received: Date.now(), expires: Date.now() + 86_400_000, attempts: 1, via_original: 'smtp' as const, size: 3 },
    body: Buffer.from('x\r\n'),
  };
  try {
    // The first request's worker is slow (its barrier pending past the primary's wait): the source sends the batch here again.
    const first = storeDrained(spool, intake, () => undefined, [record]);
    await waitUntil(() => barriers.length === 1 && spool.home.size === 1, 5_000);
    const [again] = await storeDrained(spool, intake, () => undefined, [record]);
    expect(again.status).toBe('unknown');
    barriers[0].release(Object.assign(new Error('sync_timeout'), { code: 'EMIRRORSYNC' }));
    await waitUntil(() => barriers.length === 2, 5_000);
    barriers[1].release();
    expect((await first)[0].status).toBe('unavailable');
    // Withdrawn here: `duplicate` above would have removed the source's copy too, and the message with it.
    expect(spool.home.size).toBe(0);
  } finally {
    for (const b of barriers) b.release();
    await spool.close();
  }
});
