// An MTA started where a drain was killed: what it asks the destination and
// what it removes or releases, against a test destination on 127.0.0.1.
import { join } from 'node:path';
import pino from 'pino';
import { Journal, journalPath } from '../../../../../runtime/mta/drain/source/journal';
import { RELEASE_AFTER_MS, heldAtStart, reconcileAtStart, writeClientSettings } from '../../../../../runtime/mta/drain/source/reconcile';
import { startDrainDestination } from '../../../../helpers/drain-destination';
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
