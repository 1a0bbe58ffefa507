// An MTA started where a drain was killed: what it asks the destination and
// what it removes or releases, against a test destination on 127.0.0.1, and
// against a real drain endpoint that has drained the messages onward since.
import { join } from 'node:path';
import pino from 'pino';
import { encodeBatch, type DrainRecord } from '../../../../../runtime/mta/drain/protocol';
import { DestinationClient, parseDestination } from '../../../../../runtime/mta/drain/source/destination-client';
import { Journal, journalPath } from '../../../../../runtime/mta/drain/source/journal';
import { RELEASE_AFTER_MS, heldAtStart, reconcileAtStart, writeClientSettings } from '../../../../../runtime/mta/drain/source/reconcile';
import { newMessageId } from '../../../../../runtime/mta/message-id';
import { startDrainDestination } from '../../../../helpers/drain-destination';
import { drainedOnward, startEndpointNode } from '../../../../helpers/drain-endpoint-node';
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

test('a destination that has drained the messages onward since (to a third node) still has them: the source removes its copies, it does not deliver them too', async () => {
  const secret = newSecret();
  const a = join(dir, 'onward-a');
  const b = join(dir, 'onward-b');
  const nodeB = await startEndpointNode(b, secret);
  try {
    // A's drain journals the batch, sends it, and is killed before it hears B's answer: B has queued it.
    const t0 = Date.now();
    const records: DrainRecord[] = [newMessageId(), newMessageId()].map((id) => {
      const body = Buffer.from(`Subject: ${id}\r\n\r\nhello\r\n`);
      return { header: { id, from: 's@shop.test', to: ['r@far.test'], received: t0, expires: t0 + 86_400_000, attempts: 0, via_original: 'smtp', size: body.length }, body };
    });
    const ids = records.map((r) => r.header.id);
    const j = new Journal(journalPath(a));
    j.append({ dest: nodeB.label, ids, at: t0 });
    j.close();
    writeClientSettings(a, { insecure: true });
    const client = new DestinationClient(parseDestination(nodeB.label), { secret, node: 'node-a', insecure: true, timeoutMs: 30_000, maxSockets: 1 });
    expect(await client.sendBatch(encodeBatch(records), ids)).toMatchObject({ kind: 'answered', results: ids.map((id) => ({ id, status: 'queued' })) });
    client.close();
    // B is drained onward to C (`volley drain` on B, stopped meanwhile), then starts again, empty.
    await nodeB.stop();
    await drainedOnward(b, ids);
    await nodeB.start();
    // A starts where its drain was killed, long enough after that B's "no" would be trusted.
    const calls: { remove: string[]; release: string[] }[] = [];
    await reconcileAtStart({
      persistentPath: a,
      nodeId: 'node-a',
      secret: () => secret,
      logger: pino({ level: 'silent' }),
      retryMs: 10,
      now: () => t0 + RELEASE_AFTER_MS,
      settle: async (remove, release) => void calls.push({ remove, release }),
    });
    // B took them and passed them on: A's copies go. Released, A would deliver what C delivers.
    expect(calls).toEqual([{ remove: ids, release: [] }]);
    expect(heldAtStart(a).size).toBe(0);
  } finally {
    await nodeB.stop();
  }
});
