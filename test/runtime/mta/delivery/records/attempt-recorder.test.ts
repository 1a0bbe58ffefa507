// The DSN's durability: a bounce is queued before the original's record is
// closed, and a DSN that cannot be queued (a full disk) keeps the original.
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
