// The primary's half of the drain endpoint, with stand-in workers (the IPC
// they would get is recorded, their answers given by the test) and the real
// source client over HTTPS on loopback: a worker that exits (or never answers)
// after it was handed a share of a batch may have made that share durable, so
// the source must keep the batch for this destination (resend here, answered
// `duplicate` once the worker is back), never send it to another one; and
// what such a worker stores late is recorded like the rest (`have`, `duplicate`).
import type { Worker } from 'node:cluster';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { PrimaryDrain, ownerOf } from '../../../../runtime/mta/drain/primary-side';
import { encodeBatch, type DrainRecord } from '../../../../runtime/mta/drain/protocol';
import { SeenIds } from '../../../../runtime/mta/drain/seen-ids';
import { DestinationClient, parseDestination } from '../../../../runtime/mta/drain/source/destination-client';
import type { ToWorker } from '../../../../runtime/mta/ipc';
import { newMessageId } from '../../../../runtime/mta/message-id';
import { parseConfig } from '../../../../runtime/shared/config/load';
import { testConfigYaml } from '../../../helpers/config';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir('volley-drain-primary-');
const SECRET = Buffer.from('drain-secret-for-tests-0123456789abcdef');

/** A worker that records what it is sent and answers only when told. */
function standInWorker(): { worker: Worker; sent: Extract<ToWorker, { type: 'drain-store' }>[] } {
  const sent: Extract<ToWorker, { type: 'drain-store' }>[] = [];
  const worker = { isConnected: () => true, send: (m: ToWorker) => (m.type === 'drain-store' && sent.push(m), true) } as unknown as Worker;
  return { worker, sent };
}

function record(id = newMessageId()): DrainRecord {
  const body = Buffer.from('Subject: drained\r\n\r\nhello\r\n');
  const now = Date.now();
  return { header: { id, from: 'sender@shop.test', to: ['a@far.test'], received: now, expires: now + 86_400_000, attempts: 0, via_original: 'smtp', size: body.length }, body };
}

/** Two ids, one owned by each of two workers. */
function oneForEachWorker(): [DrainRecord, DrainRecord] {
  const found: DrainRecord[] = [];
  while (found.length < 2) {
    const r = record();
    if (ownerOf(r.header.id, 2) === found.length) found.push(r);
  }
  return [found[0], found[1]];
}

let primary: PrimaryDrain;
let client: DestinationClient;
const w0 = standInWorker();
const w1 = standInWorker();

beforeAll(async () => {
  writeFileSync(join(dir, 'drain.secret'), SECRET);
  const config = parseConfig(`${testConfigYaml()}drain:\n  listen: { address: 127.0.0.1, port: 0 }\n  secret_file: ${join(dir, 'drain.secret')}\n  accept_from: [127.0.0.1/32]\n`);
  primary = (await PrimaryDrain.open({
    config,
    persistentPath: dir,
    nodeId: 'destination',
    workerCount: 2,
    workers: new Map([
      [0, w0.worker],
      [1, w1.worker],
    ]),
    unavailable: () => undefined,
    logger: pino({ level: 'silent' }),
  }))!;
  const port = await primary.endpoint.listen({ address: '127.0.0.1', port: 0 });
  client = new DestinationClient(parseDestination(`127.0.0.1:${port}`), { secret: SECRET, node: 'source', insecure: true, timeoutMs: 30_000, maxSockets: 2 });
});
afterAll(async () => {
  client?.close();
  await primary?.close();
});

test('the only worker of a batch exits before answering: the source keeps the batch for this destination (not a 503 that sends it elsewhere)', async () => {
  const r = record();
  const owner = ownerOf(r.header.id, 2);
  const w = owner === 0 ? w0 : w1;
  const before = w.sent.length;
  const answer = client.sendBatch(encodeBatch([r]), [r.header.id]);
  await waitUntil(() => w.sent.length === before + 1);
  // It may have made the record durable just before it died: the restarted worker would deliver it.
  primary.onWorkerExit(owner);
  expect(await answer).toMatchObject({ kind: 'retry', untaken: false });
});

test('one worker queues its share and the other exits: the stored one is remembered, and the source neither removes nor releases the other', async () => {
  const [a, b] = oneForEachWorker();
  const s0 = w0.sent.length;
  const s1 = w1.sent.length;
  const answer = client.sendBatch(encodeBatch([a, b]), [a.header.id, b.header.id]);
  await waitUntil(() => w0.sent.length === s0 + 1 && w1.sent.length === s1 + 1);
  primary.onStored(w0.sent[s0].id, [{ status: 'queued' }]);
  primary.onWorkerExit(1);
  // `refused` would release b: a rerun sends it to another destination, while this one may hold it.
  expect(await answer).toMatchObject({ kind: 'retry', untaken: false });
  // Sent again here, a is answered duplicate (recorded), b goes to its restarted worker.
  const again = client.sendBatch(encodeBatch([a, b]), [a.header.id, b.header.id]);
  await waitUntil(() => w1.sent.length === s1 + 2);
  expect(w1.sent[s1 + 1].records.map((x) => x.header.id)).toEqual([b.header.id]);
  primary.onStored(w1.sent[s1 + 1].id, [{ status: 'duplicate' }]);
  expect(await again).toEqual({
    kind: 'answered',
    results: [
      { id: a.header.id, status: 'duplicate' },
      { id: b.header.id, status: 'duplicate' },
    ],
  });
});

test('a store with its worker counts as storing its ids (the reconcile does not remove them yet) until the worker answers', async () => {
  const r = record();
  const owner = ownerOf(r.header.id, 2);
  const w = owner === 0 ? w0 : w1;
  const before = w.sent.length;
  expect(primary.isStoring(r.header.id)).toBe(false);
  const first = client.sendBatch(encodeBatch([r]), [r.header.id]);
  await waitUntil(() => w.sent.length === before + 1);
  expect(primary.isStoring(r.header.id)).toBe(true);
  primary.onStored(w.sent[before].id, [{ status: 'queued' }]);
  expect(await first).toMatchObject({ kind: 'answered', results: [{ status: 'queued' }] });
  expect(primary.isStoring(r.header.id)).toBe(false);
});

// A worker slower than the store timeout (shortened here: the worker answers only when the test says,
// so the timeout has always fired first): the source was answered 500 `unknown`, the worker may store
// the share later, and what it stores must count as held here like anything answered in time.
describe('a worker that answers after its store timed out', () => {
  let slow: PrimaryDrain;
  let slowClient: DestinationClient;
  const sw = standInWorker();
  let exited = false;
  const slowDir = tempDir('volley-drain-slow-');

  beforeAll(async () => {
    writeFileSync(join(slowDir, 'drain.secret'), SECRET);
    const config = parseConfig(`${testConfigYaml()}drain:\n  listen: { address: 127.0.0.1, port: 0 }\n  secret_file: ${join(slowDir, 'drain.secret')}\n  accept_from: [127.0.0.1/32]\n`);
    const worker = { isConnected: () => !exited, send: sw.worker.send.bind(sw.worker) } as unknown as Worker;
    slow = (await PrimaryDrain.open({ config, persistentPath: slowDir, nodeId: 'destination', workerCount: 1, workers: new Map([[0, worker]]), unavailable: () => undefined, logger: pino({ level: 'silent' }), storeTimeoutMs: 1 }))!;
    const port = await slow.endpoint.listen({ address: '127.0.0.1', port: 0 });
    slowClient = new DestinationClient(parseDestination(`127.0.0.1:${port}`), { secret: SECRET, node: 'source', insecure: true, timeoutMs: 30_000, maxSockets: 2 });
  });
  afterAll(async () => {
    slowClient?.close();
    await slow?.close();
  });

  test('its late `queued` is recorded: `have` names the id (never "not here", so the source keeps its copy unreleased) and a resend is `duplicate` without storing it again', async () => {
    const r = record();
    const before = sw.sent.length;
    expect(await slowClient.sendBatch(encodeBatch([r]), [r.header.id])).toMatchObject({ kind: 'retry', untaken: false });
    // Before the worker answers, it may still store it: "cannot say" (asked again), not "not here".
    expect(await slowClient.have([r.header.id])).toEqual({ have: new Set(), unknown: new Set([r.header.id]) });
    slow.onStored(sw.sent[before].id, [{ status: 'queued' }]);
    await waitUntil(async () => (await slowClient.have([r.header.id])) !== undefined && (await slowClient.have([r.header.id]) as { have: Set<string> }).have.size === 1);
    expect(await slowClient.have([r.header.id])).toEqual({ have: new Set([r.header.id]), unknown: new Set() });
    // The copy here may be delivered by now (gone from the spool): only the dedupe store can say `duplicate`.
    const sent = sw.sent.length;
    expect(await slowClient.sendBatch(encodeBatch([r]), [r.header.id])).toEqual({ kind: 'answered', results: [{ id: r.header.id, status: 'duplicate' }] });
    expect(sw.sent.length).toBe(sent);
  });

  test('its worker exits before answering: `have` cannot say until the restarted worker is ready (its held messages are recorded by then)', async () => {
    const r = record();
    const before = sw.sent.length;
    expect(await slowClient.sendBatch(encodeBatch([r]), [r.header.id])).toMatchObject({ kind: 'retry', untaken: false });
    exited = true;
    slow.onWorkerExit(0);
    expect(await slowClient.have([r.header.id])).toEqual({ have: new Set(), unknown: new Set([r.header.id]) });
    exited = false;
    // The restarted worker held none of it: drain-held recorded nothing, so it was never stored.
    await slow.onHeld([]);
    slow.onWorkerReady(0);
    expect(await slowClient.have([r.header.id])).toEqual({ have: new Set(), unknown: new Set() });
    expect(sw.sent.length).toBe(before + 1);
  });

  test('its restarted worker reports the message held and recording it fails: still in `have` (kept in memory), never "not here" once the worker is ready', async () => {
    const r = record();
    expect(await slowClient.sendBatch(encodeBatch([r]), [r.header.id])).toMatchObject({ kind: 'retry', untaken: false });
    exited = true;
    slow.onWorkerExit(0);
    exited = false;
    // The restarted worker did store it (drain-held), and the seen-ids write fails (a broken disk).
    const add = jest.spyOn(SeenIds.prototype, 'add').mockRejectedValue(new Error('EIO: the disk is gone'));
    try {
      // primary.ts logs a rejection and acks the worker anyway, which then reports ready.
      await slow.onHeld([r.header.id]).catch(() => undefined);
    } finally {
      add.mockRestore();
    }
    slow.onWorkerReady(0);
    expect(await slowClient.have([r.header.id])).toEqual({ have: new Set([r.header.id]), unknown: new Set() });
  });

  test('one store unanswered does not hide the others: `have` answers for the ids it can and names the one it cannot say yet', async () => {
    const held = record();
    const wedged = record();
    const before = sw.sent.length;
    // `held` stored and recorded in time... (the fake worker answers only when told)
    const stored = slowClient.sendBatch(encodeBatch([held]), [held.header.id]);
    await waitUntil(() => sw.sent.length === before + 1);
    expect(await stored).toMatchObject({ kind: 'retry', untaken: false });
    slow.onStored(sw.sent[before].id, [{ status: 'queued' }]);
    await waitUntil(async () => ((await slowClient.have([held.header.id])) as { have: Set<string> } | undefined)?.have.size === 1);
    // ... `wedged` given to a worker that never answers.
    expect(await slowClient.sendBatch(encodeBatch([wedged]), [wedged.header.id])).toMatchObject({ kind: 'retry', untaken: false });
    expect(await slowClient.have([held.header.id, wedged.header.id])).toEqual({ have: new Set([held.header.id]), unknown: new Set([wedged.header.id]) });
  });
});
