// The drain endpoint on a real MTA (two workers) over real HTTPS on
// loopback: a signed batch lands in the spool with the source's state, a
// second copy (also after a restart) is answered `duplicate`, and every
// whole-request refusal (401, 403, 409, 400, 413) leaves the queue untouched;
// a message the node holds itself (an interrupted drain of its own) is kept
// before `have` says yes for it.
import { rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { newMessageId } from '../../../../runtime/mta/message-id';
import { encodeBatch, signRequest, type DrainMessageHeader, type DrainRecord } from '../../../../runtime/mta/drain/protocol';
import pino from 'pino';
import { DrainEndpoint, type StoreOutcome } from '../../../../runtime/mta/drain/endpoint';
import { SeenIds } from '../../../../runtime/mta/drain/seen-ids';
import { parseConfig } from '../../../../runtime/shared/config/load';
import { loadTls } from '../../../../runtime/shared/tls-files';
import { ADMIN_AUTH, testConfigYaml } from '../../../helpers/config';
import { startMta, type MtaProcess } from '../../../helpers/mta-process';
import { getFreePort } from '../../../helpers/postfix-tools';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { Journal, journalPath, readJournal } from '../../../../runtime/mta/drain/source/journal';
import { heldAtStart, writeClientSettings } from '../../../../runtime/mta/drain/source/reconcile';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();
const SECRET = Buffer.from('drain-secret-for-tests-0123456789abcdef');
const SOURCE = 'source-node';
let drainPort = 0;
let mta: MtaProcess;

// 127.0.0.2 may drain directly; 127.0.0.1 is a trusted proxy (it must name the source); 127.0.0.3 is neither.
async function start(): Promise<MtaProcess> {
  return startMta({ configPath: join(dir, 'volley.yaml'), persistentPath: join(dir, 'pp'), workers: 2 });
}

beforeAll(async () => {
  drainPort = await getFreePort();
  writeFileSync(join(dir, 'drain.secret'), SECRET);
  const drain =
    `drain:\n  listen: { address: 127.0.0.1, port: ${drainPort} }\n  secret_file: ${join(dir, 'drain.secret')}\n` +
    '  accept_from: [127.0.0.2/32]\n  trusted_proxies: [127.0.0.1/32]\n  max_batch_bytes: 64KB\n';
  writeFileSync(join(dir, 'volley.yaml'), testConfigYaml({ extra: drain }));
  mta = await start();
}, 60_000);
afterAll(() => mta?.stop());

interface Reply {
  status: number;
  body: { results?: { id: string; status: string; reason?: string }[]; have?: string[]; error?: { code: string; message: string } };
}

function post(path: string, body: Buffer, options: { from?: string; headers?: Record<string, string>; secret?: Buffer; node?: string; now?: number; port?: number } = {}): Promise<Reply> {
  const signed = signRequest(options.secret ?? SECRET, options.node ?? SOURCE, body, options.now);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: options.port ?? drainPort,
        path,
        method: 'POST',
        localAddress: options.from ?? '127.0.0.2',
        rejectUnauthorized: false, // the destination's self-signed pair (no TLS files configured)
        headers: { 'content-type': 'application/x-volley-drain', 'content-length': body.length, ...signed, ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString() || '{}') as Reply['body'] }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const HOUR = 3_600_000;
function record(extra: Partial<DrainMessageHeader> = {}, text = 'Subject: drained\r\n\r\nhello\r\n'): DrainRecord {
  const body = Buffer.from(text);
  const now = Date.now();
  return {
    header: { id: newMessageId(), from: 'sender@shop.test', to: ['a@far.test', 'b@far.test'], received: now - 2 * 86_400_000, expires: now + 86_400_000, next: now + HOUR, attempts: 3, pool: 'p1', meta: { tenant: 't1' }, via_original: 'smtp', size: body.length, ...extra },
    body,
  };
}

async function queued(): Promise<number> {
  return ((await (await fetch(`${mta.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as { queued: number }).queued;
}

async function message(id: string): Promise<{ queued: boolean; state: Record<string, unknown> | null }> {
  return (await (await fetch(`${mta.adminUrl}/queue/messages/${id}`, { headers: ADMIN_AUTH })).json()) as { queued: boolean; state: Record<string, unknown> | null };
}

const batch = Array.from({ length: 20 }, () => record());
/** Drained, then purged here: only the dedupe store remembers it. */
let purgedId = '';

test('a signed batch lands with the state the source gave it, and the future retry waits', async () => {
  const before = await queued();
  const r = await post('/drain/v1/messages', encodeBatch(batch));
  expect(r.status).toBe(200);
  expect(r.body.results).toEqual(batch.map((b) => ({ id: b.header.id, status: 'queued' })));
  expect(await queued()).toBe(before + batch.length);
  const h = batch[0].header;
  const m = await message(h.id);
  expect(m.queued).toBe(true);
  expect(m.state).toMatchObject({
    from: h.from,
    pending_recipients: h.to,
    attempts: 3,
    received: new Date(h.received).toISOString(),
    expires: new Date(h.expires).toISOString(),
    next_retry: new Date(h.next!).toISOString(),
    pool: 'p1',
    why: expect.stringContaining('waiting for its next retry'),
  });
});

test('the same batch again is answered duplicate and not queued twice; /have names the ids', async () => {
  const before = await queued();
  const r = await post('/drain/v1/messages', encodeBatch(batch));
  expect(r.status).toBe(200);
  expect(r.body.results).toEqual(batch.map((b) => ({ id: b.header.id, status: 'duplicate' })));
  expect(await queued()).toBe(before);
  const unknown = newMessageId();
  const have = await post('/drain/v1/have', Buffer.from(JSON.stringify({ ids: [batch[3].header.id, unknown] })));
  expect(have).toEqual({ status: 200, body: { have: [batch[3].header.id] } });
});

test('an id received by drain and since gone from the queue (delivered, purged) is still a duplicate within dedupe_retention', async () => {
  const one = record();
  expect((await post('/drain/v1/messages', encodeBatch([one]))).body.results).toEqual([{ id: one.header.id, status: 'queued' }]);
  const purged = await fetch(`${mta.adminUrl}/queue/purge?id=${one.header.id}`, { method: 'POST', headers: ADMIN_AUTH });
  expect(purged.status).toBe(200);
  expect((await message(one.header.id)).queued).toBe(false);
  expect((await post('/drain/v1/messages', encodeBatch([one]))).body.results).toEqual([{ id: one.header.id, status: 'duplicate' }]);
  expect((await message(one.header.id)).queued).toBe(false);
  purgedId = one.header.id;
});

test('one id twice in a batch is queued once', async () => {
  const one = record();
  const r = await post('/drain/v1/messages', encodeBatch([one, one]));
  expect(r.body.results).toEqual([
    { id: one.header.id, status: 'queued' },
    { id: one.header.id, status: 'duplicate' },
  ]);
});

test('a bad record is refused alone; the rest of its batch is queued', async () => {
  const good = record();
  const bad = record({ to: [] });
  const r = await post('/drain/v1/messages', encodeBatch([bad, good]));
  expect(r.status).toBe(200);
  expect(r.body.results).toEqual([
    { id: bad.header.id, status: 'refused', reason: expect.stringContaining('recipients') },
    { id: good.header.id, status: 'queued' },
  ]);
  expect((await message(bad.header.id)).queued).toBe(false);
});

describe('whole-request refusals queue nothing', () => {
  let before = 0;
  const fresh = record();
  beforeEach(async () => {
    before = await queued();
  });
  afterEach(async () => {
    expect(await queued()).toBe(before);
    expect((await message(fresh.header.id)).queued).toBe(false);
  });
  const body = encodeBatch([fresh]);

  test('wrong secret: 401', async () => {
    const r = await post('/drain/v1/messages', body, { secret: Buffer.from('another-secret-of-at-least-32-bytes!!') });
    expect(r).toMatchObject({ status: 401, body: { error: { code: 'bad_signature' } } });
  });

  test('a replayed request (time more than 5 minutes old): 401', async () => {
    const r = await post('/drain/v1/messages', body, { now: Date.now() - 10 * 60_000 });
    expect(r).toMatchObject({ status: 401, body: { error: { code: 'stale' } } });
  });

  test('an address not in accept_from: 403, even naming an allowed one in X-Forwarded-For', async () => {
    expect(await post('/drain/v1/messages', body, { from: '127.0.0.3' })).toMatchObject({ status: 403 });
    expect(await post('/drain/v1/messages', body, { from: '127.0.0.3', headers: { 'x-forwarded-for': '127.0.0.2' } })).toMatchObject({ status: 403 });
  });

  test('a trusted proxy without X-Forwarded-For / Client-IP: 403', async () => {
    expect(await post('/drain/v1/messages', body, { from: '127.0.0.1' })).toMatchObject({ status: 403 });
    expect(await post('/drain/v1/messages', body, { from: '127.0.0.1', headers: { 'x-forwarded-for': '127.0.0.9' } })).toMatchObject({ status: 403 });
  });

  test('a drain to itself: 409', async () => {
    const node = ((await (await fetch(`${mta.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as { node: string }).node;
    expect(await post('/drain/v1/messages', body, { node })).toMatchObject({ status: 409, body: { error: { code: 'self' } } });
  });

  test('a truncated batch: 400', async () => {
    const two = encodeBatch([fresh, record()]);
    expect(await post('/drain/v1/messages', two.subarray(0, two.length - 3))).toMatchObject({ status: 400, body: { error: { code: 'drain_oversize' } } });
  });

  test('a batch over max_batch_bytes: 413', async () => {
    const big = encodeBatch([fresh, record({}, `Subject: big\r\n\r\n${'x'.repeat(70 * 1024)}\r\n`)]);
    expect(await post('/drain/v1/messages', big)).toMatchObject({ status: 413 });
  });
});

test('through a trusted proxy naming an allowed source (X-Forwarded-For or Client-IP), a batch is taken', async () => {
  const a = record();
  const b = record();
  expect((await post('/drain/v1/messages', encodeBatch([a]), { from: '127.0.0.1', headers: { 'x-forwarded-for': '10.9.9.9, 127.0.0.2' } })).body.results).toEqual([{ id: a.header.id, status: 'queued' }]);
  expect((await post('/drain/v1/messages', encodeBatch([b]), { from: '127.0.0.1', headers: { 'client-ip': '127.0.0.2' } })).body.results).toEqual([{ id: b.header.id, status: 'queued' }]);
});

test('after a restart the destination still answers duplicate, and the drained state survived', async () => {
  await mta.stop();
  mta = await start();
  const h = batch[5].header;
  expect((await message(h.id)).state).toMatchObject({ attempts: 3, next_retry: new Date(h.next!).toISOString(), expires: new Date(h.expires).toISOString() });
  const before = await queued();
  const r = await post('/drain/v1/messages', encodeBatch(batch));
  expect(r.body.results).toEqual(batch.map((b) => ({ id: b.header.id, status: 'duplicate' })));
  const gone = batch[0].header;
  expect((await post('/drain/v1/messages', encodeBatch([{ header: { ...gone, id: purgedId }, body: batch[0].body }]))).body.results).toEqual([{ id: purgedId, status: 'duplicate' }]);
  expect(await queued()).toBe(before);
}, 60_000);

test('messages queued but not recorded as seen (a crash between the two writes) are duplicates even once gone from the queue', async () => {
  await mta.stop();
  rmSync(join(dir, 'pp', 'drain', 'seen.log')); // what a crash right after the spool write leaves
  mta = await start();
  const h = batch[7].header;
  expect((await fetch(`${mta.adminUrl}/queue/purge?id=${h.id}`, { method: 'POST', headers: ADMIN_AUTH })).status).toBe(200);
  expect((await message(h.id)).queued).toBe(false);
  expect((await post('/drain/v1/messages', encodeBatch([batch[7]]))).body.results).toEqual([{ id: h.id, status: 'duplicate' }]);
  expect((await message(h.id)).queued).toBe(false);
}, 60_000);

/** The message is no longer held: it waits for its next try like any other. */
async function handedToDelivery(id: string): Promise<void> {
  let why = '';
  await waitUntil(async () => {
    why = String((await message(id)).state?.why);
    return why.includes('waiting for its next retry');
  }, 10_000, () => why);
}

/**
 * This node drained `id` on to a destination and was killed before the answer; that destination is gone (nothing
 * listens). The MTA is started again on that journal: the message is held since the start.
 */
async function restartHolding(id: string): Promise<{ pp: string; gone: string }> {
  const pp = join(dir, 'pp');
  await mta.stop();
  const gone = `127.0.0.1:${await getFreePort()}`;
  const j = new Journal(journalPath(pp));
  j.append({ dest: gone, ids: [id], at: Date.now() });
  j.close();
  writeClientSettings(pp, { insecure: true });
  mta = await start();
  expect((await message(id)).state).toMatchObject({ why: expect.stringContaining('held since the start') });
  return { pp, gone };
}

test('a message this node holds for an interrupted drain of its own: have answers yes only once it is kept here (journaled released) and handed to delivery', async () => {
  const h = batch[9].header;
  const { pp, gone } = await restartHolding(h.id);
  const have = await post('/drain/v1/have', Buffer.from(JSON.stringify({ ids: [h.id], partial: true })));
  expect(have).toEqual({ status: 200, body: { have: [h.id] } });
  // On disk before that answer: this copy is never removed by a later answer, and a restart delivers it.
  expect(readJournal(journalPath(pp)).at(-1)).toMatchObject({ released: [h.id], dest: gone });
  expect(heldAtStart(pp).size).toBe(0);
  await handedToDelivery(h.id);
}, 60_000);

test('a batch with a message this node holds for an interrupted drain of its own: answered duplicate only once that copy is kept here (journaled released) and handed to delivery', async () => {
  const h = batch[11].header;
  const { pp, gone } = await restartHolding(h.id);
  // Its source, rerun, sends it here again: `duplicate` makes it remove its copy.
  expect((await post('/drain/v1/messages', encodeBatch([batch[11]]))).body.results).toEqual([{ id: h.id, status: 'duplicate' }]);
  expect(readJournal(journalPath(pp)).at(-1)).toMatchObject({ released: [h.id], dest: gone });
  expect(heldAtStart(pp).size).toBe(0);
  await handedToDelivery(h.id);
}, 60_000);

describe('in process: when the node cannot take a batch now', () => {
  let endpoint: DrainEndpoint;
  let seen: SeenIds;
  let down: string | undefined;
  let outcome: (i: number) => StoreOutcome;
  const stored: string[] = [];

  beforeAll(async () => {
    const config = parseConfig(`${testConfigYaml()}drain: { accept_from: [127.0.0.2/32] }\n`).drain!;
    seen = await SeenIds.open(join(dir, 'unit', 'seen.log'), config.dedupeRetentionMs, { fsync: false });
    endpoint = new DrainEndpoint({
      config,
      nodeId: 'destination',
      secrets: [SECRET],
      tls: await loadTls(undefined, join(dir, 'unit'), 'localhost'),
      seen,
      store: async (records) => records.map((r, i) => (stored.push(r.header.id), outcome(i))),
      unavailable: () => down,
      logger: pino({ level: 'silent' }),
    });
    await endpoint.listen({ address: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await endpoint.close();
    await seen.close();
  });

  test('stopping or draining itself: 503, and nothing reaches the spool', async () => {
    down = 'this node is stopping';
    outcome = () => ({ status: 'queued' });
    const r = await post('/drain/v1/messages', encodeBatch([record()]), { port: endpoint.port });
    expect(r).toMatchObject({ status: 503, body: { error: { code: 'unavailable', message: 'this node is stopping' } } });
    expect(stored).toEqual([]);
    down = undefined;
  });

  test('spool full for the whole batch: 503 (nothing held here, the source may go elsewhere)', async () => {
    outcome = () => ({ status: 'unavailable', reason: 'spool disk is full' });
    const a = record();
    const r = await post('/drain/v1/messages', encodeBatch([a]), { port: endpoint.port });
    expect(r).toMatchObject({ status: 503 });
    expect(seen.has(a.header.id)).toBe(false);
  });

  test('spool full for part of a batch: the stored part is queued and remembered, the rest refused with the reason', async () => {
    outcome = (i) => (i === 0 ? { status: 'queued' } : { status: 'unavailable', reason: 'spool disk is full' });
    const a = record();
    const b = record();
    const r = await post('/drain/v1/messages', encodeBatch([a, b]), { port: endpoint.port });
    expect(r.body.results).toEqual([
      { id: a.header.id, status: 'queued' },
      { id: b.header.id, status: 'refused', reason: 'unavailable: spool disk is full' },
    ]);
    expect([seen.has(a.header.id), seen.has(b.header.id)]).toEqual([true, false]);
  });

  test('one id twice in a batch whose first copy could not be stored: the second is not answered duplicate (the source would drop the message)', async () => {
    const a = record();
    const b = record();
    outcome = (i) => (i === 0 ? { status: 'queued' } : { status: 'unavailable', reason: 'spool disk is full' });
    const r = await post('/drain/v1/messages', encodeBatch([b, a, a]), { port: endpoint.port });
    expect(r.body.results).toEqual([
      { id: b.header.id, status: 'queued' },
      { id: a.header.id, status: 'refused', reason: 'unavailable: spool disk is full' },
      { id: a.header.id, status: 'refused', reason: 'unavailable: spool disk is full' },
    ]);
  });

  test('a failed write of the seen ids still answers queued (the spool holds them; a 503 would send them elsewhere too), and dedupes from memory', async () => {
    const broken = await SeenIds.open(join(dir, 'unit-broken', 'seen.log'), 86_400_000, { fsync: false });
    await broken.close(); // its file handle is gone: every write fails
    const config = parseConfig(`${testConfigYaml()}drain: { accept_from: [127.0.0.2/32] }\n`).drain!;
    const other = new DrainEndpoint({
      config,
      nodeId: 'destination',
      secrets: [SECRET],
      tls: await loadTls(undefined, join(dir, 'unit'), 'localhost'),
      seen: broken,
      store: async (records) => records.map(() => ({ status: 'queued' as const })),
      unavailable: () => undefined,
      logger: pino({ level: 'silent' }),
    });
    await other.listen({ address: '127.0.0.1', port: 0 });
    try {
      const a = record();
      expect((await post('/drain/v1/messages', encodeBatch([a]), { port: other.port })).body.results).toEqual([{ id: a.header.id, status: 'queued' }]);
      expect((await post('/drain/v1/messages', encodeBatch([a]), { port: other.port })).body.results).toEqual([{ id: a.header.id, status: 'duplicate' }]);
    } finally {
      await other.close();
    }
  });
});
