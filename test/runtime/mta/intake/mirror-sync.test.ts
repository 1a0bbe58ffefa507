// Intake under a sync HA mirror (mirror.mode: sync): nothing is acknowledged
// before the mirror's barrier resolves; when it fails (policy block, or no
// mirror daemon) SMTP answers 451 4.3.0 and HTTP 503 with a JSON error, and
// the message already written is withdrawn durably (a reopened spool does
// not hold it), so it is never delivered while the client retries elsewhere.
import { join } from 'node:path';
import pino from 'pino';
import { DeliveryEngine } from '../../../../runtime/mta/delivery/engine';
import { Router } from '../../../../runtime/mta/delivery/routing/router';
import { EventLog as AttemptLog } from '../../../../runtime/mta/events/event-log';
import { Intake, WITHDRAWAL_BARRIER_MS } from '../../../../runtime/mta/intake/intake';
import { SpoolPartition } from '../../../../runtime/mta/spool/partition';
import type { SpoolEntry } from '../../../../runtime/mta/spool/types';
import { parseConfig } from '../../../../runtime/shared/config/load';
import type { Connector } from '../../../../runtime/shared/smtp/connector';
import { TEST_TOKEN, deliveryConfigYaml, testConfig } from '../../../helpers/config';
import { acceptingSession } from '../../../helpers/accepting-session';
import { startIntake, type IntakeHarness } from '../../../helpers/intake-harness';
import { SmtpDialog, message } from '../../../helpers/smtp-dialog';
import { tempDir } from '../../../helpers/tmp';
import { waitUntil } from '../../../helpers/proxy-fixtures';

const dir = tempDir('volley-intake-mirror-');
/** What the fake mirror answers next: resolve, or reject with this error. */
let answer: Error | undefined;
const order: string[] = [];
const mirror = {
  barrier: async (): Promise<string> => {
    order.push('barrier');
    if (answer) throw answer;
    return 'sync';
  },
};
let h: IntakeHarness;
const accepted: SpoolEntry[] = [];
beforeAll(async () => {
  h = await startIntake(testConfig({ relayFrom: ['127.0.0.0/8'] }), dir, join(dir, 'spool'), mirror);
  h.intake.on('accepted', (e: SpoolEntry) => {
    order.push('accepted');
    accepted.push(e);
  });
});
afterAll(() => h?.close());

async function smtp(to: string): Promise<{ code: number; text: string }> {
  const s = await SmtpDialog.open(h.smtpPort);
  await s.reply();
  await s.command('EHLO injector.test');
  const r = await s.transaction('a@example.test', [to], message('mirrored'));
  await s.quit();
  return r;
}

test('the barrier comes before the acknowledgement and before delivery hears of the message', async () => {
  answer = undefined;
  order.length = 0;
  const r = await smtp('ok@x.test');
  expect(r.code).toBe(250);
  expect(order).toEqual(['barrier', 'accepted']);
  expect(h.partition.size).toBe(1);
});

test('a barrier that fails: SMTP 451 4.3.0 and HTTP 503 (JSON), the written message withdrawn durably, delivery never told', async () => {
  answer = Object.assign(new Error('the secondary did not acknowledge within sync_timeout'), { code: 'EMIRRORSYNC' });
  const queued = h.partition.size;
  const before = accepted.length;
  const r = await smtp('refused@x.test');
  expect(r.code).toBe(451);
  expect(r.text).toMatch(/^4\.3\.0 .*HA mirror/);
  const res = await fetch(`${h.httpUrl}/v1/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ from: 'a@example.test', to: ['refused-http@x.test'], raw: 'Subject: x\r\n\r\ny\r\n' }),
  });
  expect(res.status).toBe(503);
  expect(await res.json()).toMatchObject({ error: { code: 'mirror_unavailable' } });
  expect(accepted.length).toBe(before);
  expect(h.partition.size).toBe(queued);
  // Durable: the spool read again from its files holds only the acknowledged message.
  const again = await SpoolPartition.open({ dir: h.partition.dir, fsync: false });
  try {
    expect([...again.entries()].map((e) => e.to)).toEqual([['ok@x.test']]);
  } finally {
    await again.close();
  }
});

// The order under overlap: the partition writes, then syncs (syncAfterWrite),
// and the barrier is asked between the two; the acknowledgement (submit
// resolving) needs both the local sync and the secondary's ack, whichever
// comes last. Both are held by hand here.
describe('the barrier alongside the local sync', () => {
  type Held = { release: (err?: Error) => void };
  const syncs: Held[] = [];
  const barriers: Held[] = [];
  const events: string[] = [];
  let partition: SpoolPartition;
  let intake: Intake;
  const held = (list: Held[], name: string) => (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      events.push(`${name} asked`);
      list.push({ release: (err) => (events.push(`${name} ${err ? 'failed' : 'done'}`), err ? reject(err) : resolve()) });
    });
  const submit = (to: string): Promise<string> =>
    intake.submit({ from: 'a@example.test', to: [to], message: Buffer.from('Subject: x\r\n\r\ny\r\n'), via: 'smtp' }).then(
      () => (events.push('250'), '250'),
      (err: { reason?: string }) => (events.push(`refused ${err.reason}`), `refused ${err.reason}`),
    );

  beforeAll(async () => {
    partition = await SpoolPartition.open({ dir: join(dir, 'overlap'), syncAfterWrite: true, sync: held(syncs, 'local sync') });
    intake = new Intake(partition, testConfig({ relayFrom: ['127.0.0.0/8'] }), { barrier: held(barriers, 'barrier') });
  });
  afterAll(async () => {
    for (const s of [...syncs, ...barriers]) s.release();
    await partition?.close();
  });
  beforeEach(() => {
    syncs.length = 0;
    barriers.length = 0;
    events.length = 0;
  });

  test('the barrier is asked before the local sync is done; a fast secondary still waits for the local sync', async () => {
    const result = submit('fast-secondary@x.test');
    await waitUntil(() => barriers.length === 1 && syncs.length === 1, 5_000, () => events.join(', '));
    expect(events).toEqual(['barrier asked', 'local sync asked']);
    barriers[0].release();
    await new Promise((r) => setImmediate(r));
    expect(events).not.toContain('250');
    syncs[0].release();
    expect(await result).toBe('250');
    expect(events).toEqual(['barrier asked', 'local sync asked', 'barrier done', 'local sync done', '250']);
  });

  test('a slow secondary: the local sync done is not enough', async () => {
    const result = submit('slow-secondary@x.test');
    await waitUntil(() => barriers.length === 1 && syncs.length === 1, 5_000, () => events.join(', '));
    syncs[0].release();
    await new Promise((r) => setImmediate(r));
    expect(events).not.toContain('250');
    barriers[0].release();
    expect(await result).toBe('250');
    expect(events.slice(-2)).toEqual(['barrier done', '250']);
  });

  test('a barrier that fails during the local sync: refused once the write settled, and the message withdrawn', async () => {
    const before = partition.size;
    const result = submit('no-secondary@x.test');
    await waitUntil(() => barriers.length === 1 && syncs.length === 1, 5_000, () => events.join(', '));
    barriers[0].release(Object.assign(new Error('sync_timeout'), { code: 'EMIRRORSYNC' }));
    syncs[0].release();
    // The withdrawal is a done record: one more local sync.
    await waitUntil(() => syncs.length === 2, 5_000, () => events.join(', '));
    syncs[1].release();
    // Then a barrier for that done record, before the refusal goes out: a promoted secondary must know it was withdrawn.
    await waitUntil(() => barriers.length === 2, 5_000, () => events.join(', '));
    await new Promise((r) => setImmediate(r));
    expect(events).not.toContain('refused mirror-unavailable');
    barriers[1].release();
    expect(await result).toBe('refused mirror-unavailable');
    expect(events).toEqual(['barrier asked', 'local sync asked', 'barrier failed', 'local sync done', 'local sync asked', 'local sync done', 'barrier asked', 'barrier done', 'refused mirror-unavailable']);
    expect(partition.size).toBe(before);
  });

  test('a withdrawal the mirror does not confirm in time: refused anyway after WITHDRAWAL_BARRIER_MS, and reported as unmirrored', async () => {
    const reports: (Error | undefined)[] = [];
    const onWithdrawn = (_id: string, _why: string, _failed?: Error, unmirrored?: Error): number => reports.push(unmirrored);
    intake.on('withdrawn', onWithdrawn);
    try {
      const result = submit('withdrawal-unconfirmed@x.test');
      await waitUntil(() => barriers.length === 1 && syncs.length === 1, 5_000, () => events.join(', '));
      barriers[0].release(Object.assign(new Error('sync_timeout'), { code: 'EMIRRORSYNC' }));
      syncs[0].release();
      await waitUntil(() => syncs.length === 2, 5_000, () => events.join(', '));
      // Only the bound's timer is faked: the spool's I/O runs as usual.
      jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
      try {
        syncs[1].release();
        await waitUntil(() => barriers.length === 2, 5_000, () => events.join(', '));
        jest.advanceTimersByTime(WITHDRAWAL_BARRIER_MS - 1);
        await new Promise((r) => setImmediate(r));
        expect(events).not.toContain('refused mirror-unavailable');
        jest.advanceTimersByTime(1);
        expect(await result).toBe('refused mirror-unavailable');
      } finally {
        jest.useRealTimers();
      }
      expect(reports).toEqual([expect.objectContaining({ code: 'EMIRRORSYNC', message: expect.stringContaining('withdrawal') })]);
    } finally {
      intake.off('withdrawn', onWithdrawn);
    }
  });

  test('a withdrawal whose done record cannot be written: still refused, and the message stays out of delivery\'s sight (the client\'s retry is the copy that counts)', async () => {
    const withdrawn: { id: string; failed?: Error }[] = [];
    const onWithdrawn = (id: string, _why: string, failed?: Error): number => withdrawn.push({ id, failed });
    intake.on('withdrawn', onWithdrawn);
    try {
      const result = submit('withdraw-fails@x.test');
      await waitUntil(() => barriers.length === 1 && syncs.length === 1, 5_000, () => events.join(', '));
      barriers[0].release(Object.assign(new Error('sync_timeout'), { code: 'EMIRRORSYNC' }));
      syncs[0].release();
      await waitUntil(() => syncs.length === 2, 5_000, () => events.join(', '));
      // The done record's sync fails (a disk error): the withdrawal is not durable.
      syncs[1].release(Object.assign(new Error('EIO'), { code: 'EIO' }));
      expect(await result).toBe('refused mirror-unavailable');
      expect(withdrawn).toEqual([{ id: expect.any(String), failed: expect.objectContaining({ code: 'EIO' }) }]);
      // Still queued here (indexed), but never handed to delivery: it was refused.
      expect([...partition.entries()].map((e) => e.to)).not.toContainEqual(['withdraw-fails@x.test']);
    } finally {
      intake.off('withdrawn', onWithdrawn);
    }
  });

  test('a local sync that fails after the barrier was asked: refused as a spool error, the barrier\'s failure handled', async () => {
    const result = submit('local-fails@x.test');
    await waitUntil(() => barriers.length === 1 && syncs.length === 1, 5_000, () => events.join(', '));
    syncs[0].release(Object.assign(new Error('EIO'), { code: 'EIO' }));
    expect(await result).toBe('refused spool-error');
    // Nobody awaits this barrier any more: its rejection must not surface as unhandled.
    barriers[0].release(Object.assign(new Error('sync_timeout'), { code: 'EMIRRORSYNC' }));
    await new Promise((r) => setImmediate(r));
  });
});

// Between the local write and the barrier's answer the message is in the
// partition's index (its segment stays live, a withdrawal finds it) but not in
// what delivery walks: an operator's retry-now (or a due scan, or a drain)
// must not send a message whose barrier may still fail; the client, answered
// 451, sends it again, so it would be delivered twice.
describe('a message whose barrier has not answered is not deliverable yet', () => {
  /** Records each attempt the engine starts; the MX answers 250. */
  const sent: string[] = [];
  const connector: Connector = {
    async open(target) {
      return acceptingSession(target, 'mta.test.example', { onSend: (to) => sent.push(...to) });
    },
  };
  let partition: SpoolPartition;
  let engine: DeliveryEngine;
  let attemptLog: AttemptLog;
  let intake: Intake;
  const barriers: { release: (err?: Error) => void }[] = [];
  const submit = (to: string): Promise<string> =>
    intake.submit({ from: 'a@example.test', to: [to], message: Buffer.from('Subject: x\r\n\r\ny\r\n'), via: 'smtp' }).then(
      () => '250',
      (err: { reason?: string }) => `refused ${err.reason}`,
    );

  beforeAll(async () => {
    const config = parseConfig(deliveryConfigYaml('routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]\n'));
    partition = await SpoolPartition.open({ dir: join(dir, 'unconfirmed', 'spool'), fsync: false });
    attemptLog = new AttemptLog({ dir: join(dir, 'unconfirmed', 'attempts'), name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
    engine = new DeliveryEngine({ partitions: [partition], config, connector, router: new Router({ routes: config.routes, servers: [] }), attemptLog, logger: pino({ level: 'silent' }), nodeId: 'test' });
    engine.start();
    intake = new Intake(partition, config, { barrier: () => new Promise<string>((resolve, reject) => barriers.push({ release: (err) => (err ? reject(err) : resolve('sync')) })) });
  });
  afterAll(async () => {
    for (const b of barriers) b.release();
    await engine?.stop();
    await attemptLog?.close();
    await partition?.close();
  });

  test('retry-now skips it while its barrier waits; refused, it is withdrawn and never sent; confirmed, it is', async () => {
    const appended = jest.spyOn(partition, 'appendMessage');
    const refused = submit('refused@x.test');
    // Written (the barrier is asked once the record is in the file) and indexed (size counts it): the append has resolved.
    await waitUntil(() => barriers.length === 1 && partition.size === 1, 5_000);
    expect(engine.retryNow({})).toBe(0);
    expect([...partition.entries()]).toEqual([]);
    // The admin views agree: described as awaiting the mirror (not "due now"), and the summary accounts for what size counts.
    const waiting = await (appended.mock.results[0].value as Promise<SpoolEntry>);
    appended.mockRestore();
    expect(engine.describe(waiting.id)?.why).toMatch(/awaiting the HA mirror/);
    expect(engine.summary()).toMatchObject({ messages: 0, awaitingMirror: 1 });
    barriers[0].release(Object.assign(new Error('sync_timeout'), { code: 'EMIRRORSYNC' }));
    // The withdrawal's own barrier (its done record on the secondary), then the refusal.
    await waitUntil(() => barriers.length === 2, 5_000);
    barriers[1].release();
    expect(await refused).toBe('refused mirror-unavailable');
    expect(partition.size).toBe(0);

    const confirmed = submit('confirmed@x.test');
    await waitUntil(() => barriers.length === 3 && partition.size === 1, 5_000);
    expect(engine.retryNow({})).toBe(0);
    barriers[2].release();
    expect(await confirmed).toBe('250');
    expect([...partition.entries()].map((e) => e.to)).toEqual([['confirmed@x.test']]);
    expect(engine.retryNow({})).toBe(1);
    await waitUntil(() => partition.size === 0, 10_000, () => `sent: ${sent.join(' ')}`);
    // Only the confirmed message ever reached an MX.
    expect(sent).toEqual(['confirmed@x.test']);
  });
});
