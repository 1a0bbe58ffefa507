// Storing a drained batch under a sync HA mirror: a drained message is not
// deliverable here (not in the partition's entries(), not scheduled) until
// the mirror's barrier answered; refused, it is withdrawn and reported
// unavailable, so the source keeps (and alone delivers) its copy.
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
