// An MTA started where a drain was killed: what it asks the destination and
// what it removes or releases, against a test destination on 127.0.0.1, and
// against a real drain endpoint that has drained the messages onward since.
import { join } from 'node:path';
import pino from 'pino';
import { DrainEndpoint } from '../../../../../runtime/mta/drain/endpoint';
import { encodeBatch, type DrainRecord } from '../../../../../runtime/mta/drain/protocol';
import { SeenIds, seenIdsPath } from '../../../../../runtime/mta/drain/seen-ids';
import { DestinationClient, parseDestination } from '../../../../../runtime/mta/drain/source/destination-client';
import { Journal, journalPath } from '../../../../../runtime/mta/drain/source/journal';
import { LocalSpool } from '../../../../../runtime/mta/drain/source/local-spool';
import { RELEASE_AFTER_MS, heldAtStart, reconcileAtStart, writeClientSettings } from '../../../../../runtime/mta/drain/source/reconcile';
import { newMessageId } from '../../../../../runtime/mta/message-id';
import { SpoolPartition } from '../../../../../runtime/mta/spool/partition';
import { parseConfig } from '../../../../../runtime/shared/config/load';
import { loadTls } from '../../../../../runtime/shared/tls-files';
import { testConfigYaml } from '../../../../helpers/config';
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

test('a destination that has drained the messages onward since (to a third node) still has them: the source removes its copies, it does not deliver them too', async () => {
  const secret = newSecret();
  const a = join(dir, 'onward-a');
  const b = join(dir, 'onward-b');
  const config = parseConfig(`${testConfigYaml()}drain: { accept_from: [127.0.0.1/32] }\n`).drain!;
  const tls = await loadTls(undefined, b, 'localhost');
  // B, a real drain endpoint: what it takes goes into its own spool, and its ids into its dedupe store.
  const startB = async (port: number): Promise<{ endpoint: DrainEndpoint; seen: SeenIds; partition: SpoolPartition }> => {
    const seen = await SeenIds.open(seenIdsPath(b), config.dedupeRetentionMs, { fsync: false });
    const partition = await SpoolPartition.open({ dir: join(b, 'spool', 'p000'), fsync: false });
    const endpoint = new DrainEndpoint({
      config,
      nodeId: 'node-b',
      secrets: [secret],
      tls,
      seen,
      store: async (records) => {
        for (const r of records) await partition.appendMessage({ ...r.header, via: 'drain' }, r.body);
        return records.map(() => ({ status: 'queued' as const }));
      },
      unavailable: () => undefined,
      logger: pino({ level: 'silent' }),
    });
    await endpoint.listen({ address: '127.0.0.1', port });
    return { endpoint, seen, partition };
  };
  const stopB = async (node: { endpoint: DrainEndpoint; seen: SeenIds; partition: SpoolPartition }): Promise<void> => {
    await node.endpoint.close();
    await node.seen.close();
    await node.partition.close();
  };
  let nodeB: Awaited<ReturnType<typeof startB>> | undefined = await startB(0);
  const port = nodeB.endpoint.port;
  const dest = `127.0.0.1:${port}`;
  try {
    // A's drain journals the batch, sends it, and is killed before it hears B's answer: B has queued it.
    const t0 = Date.now();
    const records: DrainRecord[] = [newMessageId(), newMessageId()].map((id) => {
      const body = Buffer.from(`Subject: ${id}\r\n\r\nhello\r\n`);
      return { header: { id, from: 's@shop.test', to: ['r@far.test'], received: t0, expires: t0 + 86_400_000, attempts: 0, via_original: 'smtp', size: body.length }, body };
    });
    const ids = records.map((r) => r.header.id);
    const j = new Journal(journalPath(a));
    j.append({ dest, ids, at: t0 });
    j.close();
    writeClientSettings(a, { insecure: true });
    const client = new DestinationClient(parseDestination(dest), { secret, node: 'node-a', insecure: true, timeoutMs: 30_000, maxSockets: 1 });
    expect(await client.sendBatch(encodeBatch(records), ids)).toMatchObject({ kind: 'answered', results: ids.map((id) => ({ id, status: 'queued' })) });
    client.close();
    // B is drained onward to C (`volley drain` on B, with B stopped): C acknowledged both, B removes them.
    await stopB(nodeB);
    nodeB = undefined;
    const bSpool = await LocalSpool.open(b, 86_400_000);
    await bSpool.markDrained(ids);
    expect(bSpool.size).toBe(0);
    await bSpool.close();
    // B starts again (empty), and A starts where its drain was killed, long enough after that B's "no" would be trusted.
    nodeB = await startB(port);
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
    // B held them and passed them on: A's copies go. Released, A would deliver what C delivers.
    expect(calls).toEqual([{ remove: ids, release: [] }]);
    expect(heldAtStart(a).size).toBe(0);
  } finally {
    if (nodeB) await stopB(nodeB);
  }
});
