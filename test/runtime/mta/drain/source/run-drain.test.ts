// `volley drain` run again after it was killed, in process against a real
// drain endpoint on 127.0.0.1 (the MTA already stopped): what the killed run
// sent and never heard about goes back to that destination only, and what the
// destination took meanwhile, though it has drained it on to a third node
// since, is not sent to it a second time.
import { join } from 'node:path';
import { encodeBatch } from '../../../../../runtime/mta/drain/protocol';
import { DestinationClient, parseDestination } from '../../../../../runtime/mta/drain/source/destination-client';
import { Journal, journalPath, readJournal, unsettled } from '../../../../../runtime/mta/drain/source/journal';
import { LocalSpool } from '../../../../../runtime/mta/drain/source/local-spool';
import { EXIT, StopSignal, runDrain, type Reporter } from '../../../../../runtime/mta/drain/source/run-drain';
import { newMessageId } from '../../../../../runtime/mta/message-id';
import { nodeIdentity } from '../../../../../runtime/mta/node-identity';
import { SpoolPartition } from '../../../../../runtime/mta/spool/partition';
import { drainedOnward, startEndpointNode } from '../../../../helpers/drain-endpoint-node';
import { getFreePort } from '../../../../helpers/postfix-tools';
import { newSecret } from '../../../../helpers/proxy-fixtures';
import { tempDir } from '../../../../helpers/tmp';

const dir = tempDir();
const DAY = 86_400_000;

/** Keeps what the drain says, for the failure message. */
function reporter(lines: unknown[]): Reporter {
  return {
    phase: (name, detail) => lines.push({ phase: name, ...detail }),
    problem: (detail) => lines.push({ problem: detail }),
    progress: () => undefined,
    result: (code, detail) => lines.push({ result: code, ...detail }),
  };
}

test('a rerun does not send again what the destination took before the kill and has drained on to a third node since: removed here, each message in one place', async () => {
  const secret = newSecret();
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  nodeIdentity(a, 'node-a');
  const nodeB = await startEndpointNode(b, secret);
  try {
    // A's queue: two messages its killed drain sent to B, one it had not sent yet.
    const [m1, m2, later] = [newMessageId(), newMessageId(), newMessageId()];
    const partition = await SpoolPartition.open({ dir: join(a, 'spool', 'p000'), fsync: false });
    for (const id of [m1, m2, later]) await partition.appendMessage({ id, from: 's@shop.test', to: [`${id}@far.test`], received: Date.now(), via: 'smtp', size: 7 }, Buffer.from('hello\r\n'));
    await partition.close();
    // The killed run: journaled, sent, B queued both, and A died before it heard so.
    const spool = await LocalSpool.open(a, 4 * DAY);
    const records = await Promise.all(spool.entries().filter((e) => e.id !== later).map((e) => spool.record(e)));
    await spool.close();
    const j = new Journal(journalPath(a));
    j.append({ dest: nodeB.label, ids: [m1, m2], at: Date.now() });
    j.close();
    const client = new DestinationClient(parseDestination(nodeB.label), { secret, node: 'node-a', insecure: true, timeoutMs: 30_000, maxSockets: 1 });
    expect(await client.sendBatch(encodeBatch(records), [m1, m2])).toMatchObject({ kind: 'answered' });
    client.close();
    // B is drained on to C meanwhile (C acknowledged both), and starts again.
    await nodeB.stop();
    await drainedOnward(b, [m1, m2]);
    await nodeB.start();

    // The rerun, with A's MTA stopped (nothing answers on its admin port).
    const lines: unknown[] = [];
    const code = await runDrain(
      {
        destinations: [nodeB.label],
        persistentPath: a,
        maxLifetimeMs: 4 * DAY,
        adminUrl: `http://127.0.0.1:${await getFreePort()}`,
        adminHeaders: {},
        secret,
        insecure: true,
        waitOnEvents: false,
        concurrency: 1,
        batchSize: 100,
        requestTimeoutMs: 30_000,
        retryDelayMs: 10,
        report: reporter(lines),
      },
      new StopSignal(),
    );
    expect({ code, lines }).toMatchObject({ code: EXIT.ok });
    // B stored m1 and m2 once (C holds them now), and the message not sent before: none of it twice.
    expect(nodeB.stored).toEqual([m1, m2, later]);
    const after = await LocalSpool.open(a, 4 * DAY);
    expect(after.size).toBe(0);
    await after.close();
    expect(unsettled(readJournal(`${journalPath(a)}.done`)).size).toBe(0);
  } finally {
    await nodeB.stop();
  }
});
