// The sync-barrier protocol end to end over a real Unix socket: the MTA's
// client (runtime/shared/mirror-sync/client.ts) against the mirror's server
// (runtime/mirror/sync-server.ts). Callers of one turn share one BARRIER
// (the spool's group commit becomes one replication request), and with
// coalesce those who come while one is out share the next; an answer
// resolves or rejects them all; a missing daemon, a refusal, a silent one
// and a peer speaking something else all reject, never resolve.
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { startSyncServer, type SyncServer } from '../../../../runtime/mirror/sync-server';
import { MirrorSyncClient } from '../../../../runtime/shared/mirror-sync/client';
import { answerLine, parseSyncLine, type BarrierAnswer } from '../../../../runtime/shared/mirror-sync/protocol';
import { captureLogger, waitUntil } from '../../../helpers/proxy-fixtures';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir('volley-mirror-sync-');
const closing: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closing.splice(0)) await c();
});

/** A server whose barriers wait until the test answers them. */
async function server(name: string): Promise<{ path: string; asked: ((a: BarrierAnswer) => void)[]; srv: SyncServer }> {
  const path = join(dir, `${name}.sock`);
  const asked: ((a: BarrierAnswer) => void)[] = [];
  const srv = await startSyncServer(path, () => new Promise((r) => asked.push(r)), captureLogger().logger);
  closing.push(() => srv.close());
  return { path, asked, srv };
}

function client(path: string, timeoutMs = 5000, coalesce?: boolean): MirrorSyncClient {
  const c = new MirrorSyncClient({ socket: path, timeoutMs, ...(coalesce !== undefined ? { coalesce } : {}) });
  closing.push(() => c.close());
  return c;
}

const settled = <T>(p: Promise<T>): Promise<{ ok: true; v: T } | { ok: false; err: Error }> => p.then((v) => ({ ok: true as const, v }), (err: Error) => ({ ok: false as const, err }));

test('the barriers of one turn share one request; those of a later turn go at once, without waiting for the first answer (coalesce off, the default)', async () => {
  const { path, asked } = await server('pipelined');
  const c = client(path);
  const first = [c.barrier(), c.barrier(), c.barrier()];
  await waitUntil(() => asked.length > 0);
  await new Promise((r) => setTimeout(r, 50));
  expect(asked).toHaveLength(1);
  const second = [c.barrier(), c.barrier()];
  await waitUntil(() => asked.length > 1); // not held behind the first: the sooner it reaches the mirror, the likelier it joins the next scan
  await new Promise((r) => setTimeout(r, 50));
  expect(asked).toHaveLength(2);
  asked[1]({ ok: true, state: 'degraded' });
  await expect(Promise.all(second)).resolves.toEqual(['degraded', 'degraded']);
  asked[0]({ ok: true, state: 'sync' });
  await expect(Promise.all(first)).resolves.toEqual(['sync', 'sync', 'sync']);
  expect(c.answered).toBe(5);
});

test('coalesce: callers that come while a request is out share the next one, sent once that answer came; the first answer never settles them', async () => {
  const { path, asked } = await server('coalesce');
  const c = client(path, 5000, true);
  const first = [c.barrier(), c.barrier()];
  await waitUntil(() => asked.length > 0);
  // Records written after the first request was sent: its answer may come from a scan that never saw them.
  const later = [0, 1, 2].map(() => {
    const b = { done: false, p: c.barrier() };
    void b.p.then(() => (b.done = true), () => (b.done = true));
    return b;
  });
  await new Promise((r) => setTimeout(r, 50));
  expect(asked).toHaveLength(1); // held while the first is out
  asked[0]({ ok: true, state: 'sync' });
  await expect(Promise.all(first)).resolves.toEqual(['sync', 'sync']);
  await waitUntil(() => asked.length > 1);
  expect(later.map((b) => b.done)).toEqual([false, false, false]); // not answered by the first request's ack
  await new Promise((r) => setTimeout(r, 50));
  expect(asked).toHaveLength(2); // all three in one request
  expect(later.map((b) => b.done)).toEqual([false, false, false]);
  asked[1]({ ok: true, state: 'sync' });
  await expect(Promise.all(later.map((b) => b.p))).resolves.toEqual(['sync', 'sync', 'sync']);
  expect(c.answered).toBe(5);
});

test('coalesce: a refused request refuses only its own callers; those gathered meanwhile are sent on and answered by their own request; close refuses what is still gathered', async () => {
  const { path, asked } = await server('coalesce-refused');
  const c = client(path, 5000, true);
  const first = settled(c.barrier());
  await waitUntil(() => asked.length > 0);
  const second = settled(c.barrier());
  asked[0]({ ok: false, reason: 'timeout', message: 'the secondary did not acknowledge' });
  expect(await first).toMatchObject({ ok: false, err: { code: 'EMIRRORSYNC' } });
  await waitUntil(() => asked.length > 1);
  asked[1]({ ok: true, state: 'sync' });
  expect(await second).toEqual({ ok: true, v: 'sync' });
  const third = settled(c.barrier());
  await waitUntil(() => asked.length > 2);
  const gathered = settled(c.barrier());
  c.close();
  expect(await gathered).toMatchObject({ ok: false, err: { code: 'EMIRRORSYNC', message: expect.stringContaining('closed') } });
  expect(await third).toMatchObject({ ok: false });
  expect(asked).toHaveLength(3);
});

test('a refusal (policy block) rejects every caller of the request', async () => {
  const { path, asked } = await server('refuse');
  const c = client(path);
  const both = [settled(c.barrier()), settled(c.barrier())];
  await waitUntil(() => asked.length > 0);
  asked[0]({ ok: false, reason: 'timeout', message: 'the secondary did not acknowledge' });
  for (const r of await Promise.all(both)) expect(r).toMatchObject({ ok: false, err: { code: 'EMIRRORSYNC', message: expect.stringContaining('(timeout)') } });
  expect(c.failed).toBe(2);
});

test('no daemon on the socket, a daemon that dies, one that never answers: rejected, and the next barrier dials again', async () => {
  const path = join(dir, 'late.sock');
  const c = client(path, 300);
  expect(await settled(c.barrier())).toMatchObject({ ok: false, err: { code: 'EMIRRORSYNC', message: expect.stringContaining('cannot reach') } });
  const { asked, srv } = await server('late');
  const dying = settled(c.barrier());
  await waitUntil(() => asked.length > 0);
  await srv.close();
  expect(await dying).toMatchObject({ ok: false, err: { message: expect.stringContaining('closed before it answered') } });
  const again = await server('late');
  const silent = settled(c.barrier());
  expect(await silent).toMatchObject({ ok: false, err: { message: expect.stringContaining('did not answer') } });
  expect(again.asked).toHaveLength(1);
});

test('a peer that speaks another protocol version is refused by both sides', async () => {
  const path = join(dir, 'v2.sock');
  const fake: Server = createServer((s) => s.resume().write('VOLLEY-MIRROR-SYNC 2\n')); // resumed: it reads, so it sees the client hang up
  await new Promise<void>((r) => fake.listen(path, () => r()));
  closing.push(() => new Promise<void>((r) => fake.close(() => r())));
  const c = client(path, 2000);
  expect(await settled(c.barrier())).toMatchObject({ ok: false, err: { code: 'EMIRRORSYNC', message: expect.stringContaining('another sync protocol') } });
});

test('lines: answers round-trip; anything else is EMIRRORSYNC', () => {
  expect(parseSyncLine(answerLine(7, { ok: true, state: 'sync' }).trimEnd())).toEqual({ t: 'answer', n: 7, answer: { ok: true, state: 'sync' } });
  expect(parseSyncLine(answerLine(8, { ok: false, reason: 'not-primary', message: 'a\nb' }).trimEnd())).toEqual({ t: 'answer', n: 8, answer: { ok: false, reason: 'not-primary', message: 'a b' } });
  expect(parseSyncLine('BARRIER 3')).toEqual({ t: 'barrier', n: 3 });
  for (const bad of ['BARRIER', 'BARRIER -1', 'BARRIER 1e3', 'OK 1 maybe', 'FAIL 1 because', 'HELLO']) expect(() => parseSyncLine(bad)).toThrow(expect.objectContaining({ code: 'EMIRRORSYNC' }));
});
