// The reconcile against a store of this node that is still unsettled (review
// s14g, F2): a batch carrying a held id M timed out at the worker (500, not
// kept), and the worker's late answer would record M seen. Removed before
// that answer, B would say `duplicate` for a copy it no longer has. The
// reconcile keeps M held while the store is unsettled and removes it only in
// a later round. A real PrimaryDrain endpoint on 127.0.0.1 with a stand-in worker.
import type { Worker } from 'node:cluster';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { PrimaryDrain } from '../../../../../runtime/mta/drain/primary-side';
import { encodeBatch, type DrainRecord } from '../../../../../runtime/mta/drain/protocol';
import { DestinationClient, parseDestination } from '../../../../../runtime/mta/drain/source/destination-client';
import { DrainHolds } from '../../../../../runtime/mta/drain/source/holds';
import { Journal, journalPath } from '../../../../../runtime/mta/drain/source/journal';
import { RELEASE_AFTER_MS, reconcileAtStart, writeClientSettings } from '../../../../../runtime/mta/drain/source/reconcile';
import type { ToWorker } from '../../../../../runtime/mta/ipc';
import { newMessageId } from '../../../../../runtime/mta/message-id';
import { parseConfig } from '../../../../../runtime/shared/config/load';
import { testConfigYaml } from '../../../../helpers/config';
import { startDrainNode } from '../../../../helpers/drain-nodes';
import { captureLogger, newSecret, waitUntil } from '../../../../helpers/proxy-fixtures';
import { tempDir } from '../../../../helpers/tmp';

const dir = tempDir();
const SECRET = newSecret();
const silent = pino({ level: 'silent' });
const t0 = 1_700_000_000_000;

function record(id: string): DrainRecord {
  const body = Buffer.from('Subject: drained\r\n\r\nhello\r\n');
  const now = Date.now();
  return { header: { id, from: 'sender@shop.test', to: ['a@far.test'], received: now, expires: now + 86_400_000, attempts: 0, via_original: 'smtp', size: body.length }, body };
}

test('held M, its store timed out (500, not kept): A\'s yes does not remove B\'s copy until the late answer is recorded; then removed, and A\'s resend is not answered duplicate', async () => {
  const M = newMessageId();
  const a = await startDrainNode(dir, 'a', { secret: SECRET });
  const bpp = join(dir, 'b');
  mkdirSync(bpp, { recursive: true });
  // B (origin of M) drained M to A: A queued it; B was killed before the answer.
  await a.seen.add([M]);
  a.spool.add(M);
  const j = new Journal(journalPath(bpp));
  j.append({ dest: a.label, ids: [M], at: t0 });
  j.close();
  writeClientSettings(bpp, { insecure: true });
  const bSpool = new Set([M]); // B's own copy, held from delivery
  const sent: Extract<ToWorker, { type: 'drain-store' }>[] = [];
  // A worker that never answers in time: every store times out (storeTimeoutMs 1).
  const worker = { isConnected: () => true, send: (m: ToWorker) => (m.type === 'drain-store' && sent.push(m), true) } as unknown as Worker;
  writeFileSync(join(bpp, 'drain.secret'), SECRET);
  const config = parseConfig(`${testConfigYaml()}drain:\n  listen: { address: 127.0.0.1, port: 0 }\n  secret_file: ${join(bpp, 'drain.secret')}\n  accept_from: [127.0.0.1/32]\n`);
  let b: PrimaryDrain | undefined;
  let storingAsked = 0;
  const holds = new DrainHolds({
    persistentPath: bpp,
    release: async () => undefined,
    storing: (id) => (storingAsked++, b!.isStoring(id)),
    logger: silent,
  });
  b = (await PrimaryDrain.open({ config, persistentPath: bpp, nodeId: 'b', workerCount: 1, workers: new Map([[0, worker]]), unavailable: () => undefined, logger: silent, holds, storeTimeoutMs: 1 }))!;
  const port = await b.endpoint.listen({ address: '127.0.0.1', port: 0 });
  const toB = new DestinationClient(parseDestination(`127.0.0.1:${port}`), { secret: SECRET, node: 'a', insecure: true, timeoutMs: 30_000, maxSockets: 1 });
  let reconciled = false;
  try {
    // A is drained (its yes below was given before its MTA stopped): M to B. The worker's share times out.
    expect(await toB.sendBatch(encodeBatch([record(M)]), [M])).toMatchObject({ kind: 'retry' });
    expect(holds.isHeld(M)).toBe(true); // not kept
    expect(b.isStoring(M)).toBe(true);

    // B's reconcile: A says yes; M's store here is unsettled, so B's copy stays.
    const log = captureLogger();
    const reconcile = reconcileAtStart({
      persistentPath: bpp,
      nodeId: 'b',
      secret: () => SECRET,
      logger: log.logger,
      retryMs: 10,
      now: () => t0 + RELEASE_AFTER_MS,
      holds,
      forget: (ids) => b!.forget(ids),
      settle: async (remove) => void remove.forEach((id) => bSpool.delete(id)),
    }).finally(() => (reconciled = true));
    await waitUntil(() => reconciled || storingAsked > 0);
    expect(bSpool.has(M)).toBe(true);
    // Said, with what to do if it lasts (a worker that never answers keeps it so until its restart).
    await waitUntil(() => log.lines().some((l) => l.storing === 1 && String(l.msg).includes('restart the MTA')), 5_000, () => log.text());

    // The worker's late answer: M was in its spool when it looked: `duplicate`, recorded seen.
    b.onStored(sent[0].id, [{ status: 'duplicate' }]);
    await waitUntil(() => !b!.isUnsettled(M));
    await reconcile; // the next round: settled now, forgotten and removed on A's yes
    expect(bSpool.has(M)).toBe(false);

    // A's drain sends the batch here again (a 500 is sent to the same destination only).
    const again = await toB.sendBatch(encodeBatch([record(M)]), [M]);
    if (again.kind === 'answered' && (again.results[0].status === 'duplicate' || again.results[0].status === 'queued')) {
      await a.seen.forget([M]);
      a.spool.delete(M); // A's drain removes what the destination acknowledged
    }
    expect(again).not.toMatchObject({ kind: 'answered', results: [{ status: 'duplicate' }] });
    expect(a.spool.has(M) || bSpool.has(M) || sent.length > 1).toBe(true);
  } finally {
    toB.close();
    await b.close();
    holds.close();
    await a.close();
  }
});
