// The DSN's durability: a bounce is queued before the original's record is
// closed, and a DSN that cannot be queued (a full disk) keeps the original.
// A result for a message no longer queued is logged and dropped, not retried
// forever (which parked its partition's later mail).
import { join } from 'node:path';
import pino from 'pino';
import { parseConfig } from '../../../../../runtime/shared/config/load';
import { EventLog as AttemptLog } from '../../../../../runtime/mta/events/event-log';
import { DeliveryEngine } from '../../../../../runtime/mta/delivery/engine';
import { DirectConnector } from '../../../../../runtime/mta/delivery/connect/direct-connector';
import { Router } from '../../../../../runtime/mta/delivery/routing/router';
import { SpoolPartition } from '../../../../../runtime/mta/spool/partition';
import { deliveryConfigYaml } from '../../../../helpers/config';
import { ScriptedMx } from '../../../../helpers/scripted-mx';
import { tempDir } from '../../../../helpers/tmp';
import { readAttempts } from '../../../../helpers/attempt-log';
import { waitUntil } from '../../../../helpers/proxy-fixtures';
import { advanceUntil } from '../../../../helpers/fake-time';
import type { Connector, OutboundSession, Source, Target } from '../../../../../runtime/shared/smtp/connector';

const dir = tempDir();

test('a DSN that cannot be queued (disk full) keeps the original queued, deferred; its retry fails again and queues the DSN, and only then does the original leave', async () => {
  const mx = new ScriptedMx({ rcpt: (r) => (r.startsWith('gone@') ? [550, '5.1.1 user unknown'] : undefined) });
  await mx.listen();
  const config = parseConfig(deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: ${mx.port} }]\ndelivery: { retry: [1h], dsn: true }\n`));
  const partition = await SpoolPartition.open({ dir: join(dir, 'spool'), fsync: false });
  const attemptLog = new AttemptLog({ dir: join(dir, 'attempts'), name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  // The bounce queue is the intake's spool: full at first, as a full disk answers.
  let full = true;
  const queued: { from: string; to: string[]; message: Buffer }[] = [];
  const bounce = async (dsn: { from: string; to: string[]; message: Buffer }): Promise<void> => {
    if (full) throw Object.assign(new Error('spool disk is full'), { code: 'ENOSPC' });
    queued.push(dsn);
  };
  const engine = new DeliveryEngine({ partitions: [partition], config, connector: new DirectConnector(), router: new Router({ routes: config.routes, servers: [] }), attemptLog, logger: pino({ level: 'silent' }), nodeId: 'test', bounce });
  type Ev = { message_id: string; recipient: string; status: string; smtp_code?: number; error_kind?: string; next_retry?: string };
  const events = (): Ev[] => readAttempts<Ev>(join(dir, 'attempts'));
  await partition.appendMessage({ id: 'd1', from: 'news@shop.test', to: ['gone@x.test', 'ok@x.test'], received: Date.now(), via: 'http', size: 20 }, Buffer.from('Subject: d1\r\n\r\nhello\r\n'));
  try {
    engine.start();
    await waitUntil(() => events().length === 2 && partition.get('d1')?.attempts === 1 && engine.status().inflight === 0, 10_000, () => JSON.stringify({ events: events(), status: engine.status() }));
    // Not lost: the original is still queued with the failed recipient pending, waiting for its retry.
    expect(queued).toEqual([]);
    expect(partition.get('d1')?.to).toEqual(['gone@x.test']);
    const first = Object.fromEntries(events().map((e) => [e.recipient, e]));
    expect(first['ok@x.test']).toMatchObject({ status: 'delivered' });
    expect(first['gone@x.test']).toMatchObject({ status: 'deferred', smtp_code: 550, error_kind: 'dsn-unqueued' });
    expect(first['gone@x.test'].next_retry).toBeDefined();

    full = false;
    engine.retryNow({});
    await waitUntil(() => partition.size === 0 && engine.status().inflight === 0, 10_000, () => JSON.stringify({ events: events(), status: engine.status() }));
    expect(queued).toHaveLength(1);
    expect(queued[0]).toMatchObject({ from: '', to: ['news@shop.test'] });
    expect(queued[0].message.toString()).toMatch(/Final-Recipient: rfc822; gone@x\.test\r\nAction: failed\r\nStatus: 5\.1\.1/);
    // The delivered recipient was not sent twice; the failed one was tried again and failed for good.
    expect(mx.messages).toHaveLength(1);
    expect(events().map((e) => `${e.recipient}:${e.status}`)).toEqual(['gone@x.test:deferred', 'ok@x.test:delivered', 'gone@x.test:failed']);
  } finally {
    await engine.stop();
    await attemptLog.close();
    await partition.close();
    await mx.close();
  }
});

describe('a result for a message no longer queued here (ENOTQUEUED)', () => {
  // Its own fake time (the test above runs on real timers): retries and the parking check move only when advanced.
  beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'clearImmediate', 'queueMicrotask'] }));
  afterEach(() => jest.useRealTimers());

  test.each([
    ['delivered (its done record)', 250],
    ['deferred (its state record)', 451],
  ] as const)('%s: the attempt is logged, the spool write dropped, and later mail of its partition is still delivered', async (_what, code) => {
    const name = `notqueued-${code}`;
    const config = parseConfig(deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]\ndelivery: { retry: [1h] }\n`));
    const partition = await SpoolPartition.open({ dir: join(dir, name, 'spool'), fsync: false });
    const attemptLog = new AttemptLog({ dir: join(dir, name, 'attempts'), name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
    const sent: string[] = [];
    // While `gone` is on the wire another path removes it from the spool (a drain's settle, an operator's tool).
    const connector: Connector = {
      async open(target: Target, source: Source): Promise<OutboundSession> {
        return {
          info: { mxHost: target.host, mxIp: target.ip, port: target.port, helo: source.helo, via: 'test', connectMs: 0 },
          usable: true,
          send: async (_from, to, message) => {
            const id = /^id (\S+)/.exec(message.toString())![1];
            sent.push(id);
            if (id === 'gone') await partition.markDone({ id, reason: 'drained' });
            const reply = id === 'gone' ? { code, text: code === 250 ? 'ok' : 'try later' } : { code: 250, text: 'ok' };
            return { recipients: to.map((rcpt) => ({ rcpt, reply, outcome: reply.code === 250 ? ('delivered' as const) : ('deferred' as const) })), envelopeMs: 0, dataMs: 0 };
          },
          close: () => undefined,
        };
      },
    };
    const engine = new DeliveryEngine({ partitions: [partition], config, connector, router: new Router({ routes: config.routes, servers: [] }), attemptLog, logger: pino({ level: 'silent' }), nodeId: 'test', recordRetryMs: 20 });
    type Ev = { message_id: string; status: string };
    const events = (): Ev[] => readAttempts<Ev>(join(dir, name, 'attempts'));
    const add = (id: string) => partition.appendMessage({ id, from: 'a@shop.test', to: [`${id}@x.test`], received: Date.now(), via: 'http', size: 8 }, Buffer.from(`id ${id}\r\n`));
    await add('gone');
    engine.start();
    try {
      // It happened: its attempt is in the attempt log.
      await advanceUntil(() => events().some((e) => e.message_id === 'gone'), 100, 50, () => JSON.stringify(engine.status()));
      // Mail of the same partition due after it is delivered, not parked behind a record that can never be written.
      engine.schedule(await add('later'));
      await advanceUntil(() => events().some((e) => e.message_id === 'later') && engine.status().inflight === 0, 100, 50, () => JSON.stringify(engine.status()));
      expect(engine.status()).toMatchObject({ inflight: 0, unrecorded: 0, parked: 0 });
      expect(sent).toEqual(['gone', 'later']);
      expect(events().map((e) => `${e.message_id}:${e.status}`)).toEqual([`gone:${code === 250 ? 'delivered' : 'deferred'}`, 'later:delivered']);
      expect(partition.size).toBe(0);
    } finally {
      await engine.stop();
      await attemptLog.close();
      await partition.close();
    }
  });
});
