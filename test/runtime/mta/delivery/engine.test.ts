import { generateKeyPairSync } from 'node:crypto';
import { isAscii } from 'node:buffer';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { parseConfig } from '../../../../runtime/shared/config/load';
import type { Connector, OutboundSession, Source, Target } from '../../../../runtime/shared/smtp/connector';
import { EventLog as AttemptLog } from '../../../../runtime/mta/events/event-log';
import { DeliveryEngine } from '../../../../runtime/mta/delivery/engine';
import { DirectConnector } from '../../../../runtime/mta/delivery/connect/direct-connector';
import { PROXY_LINK_CODE, ProxyConnectError } from '../../../../runtime/mta/delivery/connect/proxy-connector';
import { VolleyError } from '../../../../runtime/shared/errors';
import { Router } from '../../../../runtime/mta/delivery/routing/router';
import { LocalAuthority } from '../../../../runtime/mta/delivery/throttle/throttle-authority';
import type { ThrottleKey } from '../../../../runtime/mta/delivery/throttle/throttle-key';
import { Throttles } from '../../../../runtime/mta/delivery/throttle/throttles';
import type { SmtpReply } from '../../../../runtime/shared/smtp/reply';
import type { NewEvent } from '../../../../runtime/mta/events/types';
import { loadVerpSecret, Verp } from '../../../../runtime/mta/delivery/records/verp';
import { newMessageId } from '../../../../runtime/mta/message-id';
import { SpoolPartition } from '../../../../runtime/mta/spool/partition';
import { deliveryConfigYaml } from '../../../helpers/config';
import { pipeliningMx } from '../../../helpers/pipelining-mx';
import { startHeldSink } from '../../../helpers/held-sink';
import { tempDir } from '../../../helpers/tmp';
import { readAttempts } from '../../../helpers/attempt-log';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { advanceUntil, useFakeTime } from '../../../helpers/fake-time';
import { systemClock, type Clock, type TimerHandle } from '../../../../runtime/shared/clock';
import { ScriptedMx } from '../../../helpers/scripted-mx';
import { acceptingSession } from '../../../helpers/accepting-session';
import { dkimVerify } from '../../../helpers/dkim-verify';

const dir = tempDir();
// The engine's time is jest's: nothing here sleeps to wait for it (test/helpers/fake-time.ts).
useFakeTime();

/** A connector whose MX answers 250 to everything a turn of the event loop later, counting sessions in flight. */
class CountingConnector implements Connector {
  open_ = 0;
  maxOpen = 0;
  opened = 0;
  sent = 0;
  async open(target: Target, source: Source): Promise<OutboundSession> {
    this.opened++;
    this.maxOpen = Math.max(this.maxOpen, ++this.open_);
    return acceptingSession(target, source.helo, {
      onSend: async () => {
        await new Promise((r) => setImmediate(r));
        this.sent++;
      },
      onClose: (wasUsable) => {
        if (wasUsable) this.open_--;
      },
    });
  }
}

async function engineWith(name: string, rest: string, connector: Connector, commitIntervalMs = 0, logClock?: Clock) {
  const config = parseConfig(deliveryConfigYaml(rest));
  const partition = await SpoolPartition.open({ dir: join(dir, name, 'spool'), fsync: false });
  const attemptLog = new AttemptLog({ dir: join(dir, name, 'attempts'), name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false, commitIntervalMs, clock: logClock });
  const engine = new DeliveryEngine({ partitions: [partition], config, connector, router: new Router({ routes: config.routes, servers: [] }), attemptLog, logger: pino({ level: 'silent' }), nodeId: 'test' });
  const events = (): { status: string; message_id: string }[] => readAttempts(join(dir, name, 'attempts'));
  return { engine, partition, attemptLog, events };
}

test('stopping with mail held by a throttle: the stop is prompt, the held mail stays queued with no event', async () => {
  const connector = new CountingConnector();
  const { engine, partition, attemptLog, events } = await engineWith('stop', `routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]\nthrottles: [{ destination: "*", max_messages_per_hour: 1 }]\n`, connector);
  for (const [id, rcpts] of [['s1', ['a@held.test']], ['s2', ['b@held.test']], ['s3', ['c@held.test', 'd@other.test']]] as const) {
    await partition.appendMessage({ id, from: 'a@shop.test', to: [...rcpts], received: Date.now(), via: 'http', size: 3 }, Buffer.from('x\r\n'));
  }
  engine.start();
  // s1 done, and s3's other.test part delivered (its attempt waits for its held.test part); that connection lingers for more.
  await waitUntil(() => events().length >= 1 && connector.sent === 2, 10_000, () => JSON.stringify(engine.status()));
  // Prompt: the stop ends with no time passing, not when the hour's throttle or the lingering connection's timer would.
  const t0 = Date.now();
  let stopped = false;
  void engine.stop().then(() => (stopped = true));
  await waitUntil(() => stopped, 5_000, () => JSON.stringify(engine.status()));
  expect(Date.now()).toBe(t0);
  await attemptLog.close();
  // One message per domain an hour: s1 went, held.test's next waits; other.test's went.
  const ev = events();
  expect(ev.map((e) => `${e.message_id}:${e.status}`).sort()).toEqual(['s1:delivered', 's3:delivered']);
  expect([...partition.entries()].map((e) => [e.id, e.to]).sort()).toEqual([
    ['s2', ['b@held.test']],
    ['s3', ['c@held.test']],
  ]);
  await partition.close();
});

test('3,000 domains behind a global limit of 8 connections: every message goes, the limit holds, no queue is left behind', async () => {
  const config = parseConfig(deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]\ndelivery: { concurrency: 8 }\n`));
  const partition = await SpoolPartition.open({ dir: join(dir, 'spool'), fsync: false });
  const attemptLog = new AttemptLog({ dir: join(dir, 'attempts'), name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  const connector = new CountingConnector();
  const engine = new DeliveryEngine({
    partitions: [partition],
    config,
    connector,
    router: new Router({ routes: config.routes, servers: [] }),
    attemptLog,
    logger: pino({ level: 'silent' }),
    nodeId: 'test',
  });
  const domains = 3000;
  for (let i = 0; i < domains; i++) {
    await partition.appendMessage({ id: `m${i}`, from: 'a@shop.test', to: [`r@d${i}.test`], received: Date.now(), via: 'http', size: 3 }, Buffer.from('x\r\n'));
  }
  engine.start();
  await waitUntil(() => partition.entries().next().done === true, 60_000, () => JSON.stringify(engine.status().inflight));
  await engine.stop();
  await attemptLog.close();

  expect([...partition.entries()]).toHaveLength(0);
  const delivered = new Set(readAttempts<{ status: string; message_id: string }>(join(dir, 'attempts')).filter((e) => e.status === 'delivered').map((e) => e.message_id));
  expect(delivered.size).toBe(domains);
  expect(connector.maxOpen).toBe(8);
  expect(connector.opened).toBe(domains); // one connection per domain: each had one message
  // Every destination queue was emptied and dropped, not kept around idle.
  expect(engine.status().destinations).toEqual([]);
  await partition.close();
}, 90_000);

test('a backlog on one connection goes pipelined across transactions; a hang-up mid-pipeline loses nothing', async () => {
  // The sixth body is answered 421 and the server hangs up, with the next envelope already sent.
  const mx = await pipeliningMx([...Array<string>(5).fill('250 2.0.0 ok'), 'close']);
  const { engine, partition, attemptLog, events } = await engineWith('pipelined', `routes: [{ domain: "*", host: 127.0.0.1, port: ${mx.port} }]\nthrottles: [{ destination: "*", max_connections: 1 }]\n`, new DirectConnector());
  try {
    for (let i = 0; i < 20; i++) {
      await partition.appendMessage({ id: `p${i}`, from: 'a@shop.test', to: [`r${i}@dest.test`], received: Date.now(), via: 'http', size: 3 }, Buffer.from(`Subject: p${i}\r\n\r\nx\r\n`));
    }
    engine.start();
    type Ev = { status: string; message_id: string; smtp_code?: number; smtp_text?: string };
    const waitFor = async (done: (ev: Ev[]) => boolean): Promise<Ev[]> => {
      await waitUntil(() => done(events() as Ev[]), 10_000, () => JSON.stringify(events()));
      return events() as Ev[];
    };
    const first = await waitFor((ev) => ev.filter((e) => e.status === 'deferred').length >= 2 && ev.length >= 7);
    const deferred = first.filter((e) => e.status === 'deferred');
    // The refused message, and the one pipelined behind it, which never got to send its body.
    expect(deferred.map((e) => e.smtp_code).sort()).toEqual([421, 451]);
    expect(deferred.find((e) => e.smtp_code === 451)!.smtp_text).toMatch(/connection lost/);
    // Both attempts settled (spool updated, out of flight) before the operator's retry.
    const settled = (): boolean => {
      const ids = (events() as Ev[]).filter((e) => e.status === 'deferred').map((e) => e.message_id);
      return ids.every((id) => (partition.get(id)?.attempts ?? 0) >= 1 && engine.describe(id)?.why !== 'being delivered now');
    };
    await waitUntil(settled, 5000, () => JSON.stringify(engine.status()));
    engine.retryNow({});
    const all = await waitFor((ev) => new Set(ev.filter((e) => e.status === 'delivered').map((e) => e.message_id)).size === 20);
    expect(new Set(all.filter((e) => e.status === 'delivered').map((e) => e.message_id)).size).toBe(20);
    expect(partition.size).toBe(0);
    // 21 bodies: 20 messages, one of them twice (refused, then retried); the hung-up pipelined one was never sent twice.
    expect(mx.bodies).toHaveLength(21);
    // Pipelined: most bodies arrived together with the next envelope, over very few connections.
    expect(mx.chunks.filter((c) => c.includes('\r\n.\r\nMAIL FROM:')).length).toBeGreaterThanOrEqual(10);
    expect(mx.connections).toBeLessThanOrEqual(3);
  } finally {
    await engine.stop();
    await attemptLog.close();
    await partition.close();
    mx.server.close();
  }
});

test('at a slow MX, mail that would wait behind two held transactions gets a connection of its own', async () => {
  // Each final reply is held a second (of fake time), one transaction after another per connection.
  const sink = await startHeldSink({ holdMs: 1000 });
  const { engine, partition, attemptLog, events } = await engineWith('stalled', `routes: [{ domain: "*", host: 127.0.0.1, port: ${sink.port} }]\n`, new DirectConnector());
  const arrive = async (id: string): Promise<void> => {
    engine.schedule(await partition.appendMessage({ id, from: 'a@shop.test', to: [`${id}@slow.test`], received: Date.now(), via: 'http', size: 3 }, Buffer.from(`Subject: ${id}\r\n\r\nx\r\n`)));
  };
  try {
    const delivered = (id: string): boolean => events().some((e) => e.message_id === id && e.status === 'delivered');
    const stalled = (): number => engine.status().destinations.reduce((n, d) => n + d.stalled, 0);
    engine.start();
    await arrive('s0'); // the engine learns how slowly the destination answers
    await advanceUntil(() => delivered('s0'), 1000, 5);
    await arrive('s1'); // its body is held a second
    await waitUntil(() => sink.bodies() === 2, 5000, () => JSON.stringify(engine.status()));
    await arrive('s2'); // pipelined behind s1's held reply: that connection is stalled
    await waitUntil(() => stalled() === 1, 5000, () => JSON.stringify(engine.status()));
    await arrive('s3');
    // Behind s1 and s2 on one connection it would be answered after three holds; on its own, after one.
    await waitUntil(() => sink.bodies() === 3, 5000, () => JSON.stringify(engine.status())); // s0, s1 and s3: s2's waits behind s1's reply
    await jest.advanceTimersByTimeAsync(1000);
    await waitUntil(() => delivered('s3'), 5000, () => JSON.stringify(events()));
    expect(delivered('s2')).toBe(false);
    await advanceUntil(() => sink.messages() === 4, 1000, 5);
    expect(engine.status().destinations.every((d) => d.stalled === 0)).toBe(true);
  } finally {
    // The sink first: its held replies wait on fake time, and the engine's stop waits for the transactions they hold.
    await sink.stop();
    await engine.stop();
    await attemptLog.close();
    await partition.close();
  }
});

test('delivery.pipeline_transactions: false keeps one transaction at a time, for receivers that mishandle it', async () => {
  const mx = await pipeliningMx([]);
  const { engine, partition, attemptLog, events } = await engineWith('unpipelined', `routes: [{ domain: "*", host: 127.0.0.1, port: ${mx.port} }]\nthrottles: [{ destination: "*", max_connections: 1 }]\ndelivery: { pipeline_transactions: false }\n`, new DirectConnector());
  try {
    for (let i = 0; i < 10; i++) {
      await partition.appendMessage({ id: `u${i}`, from: 'a@shop.test', to: [`r${i}@dest.test`], received: Date.now(), via: 'http', size: 3 }, Buffer.from(`Subject: u${i}\r\n\r\nx\r\n`));
    }
    engine.start();
    await waitUntil(() => events().filter((e) => e.status === 'delivered').length === 10, 10_000, () => JSON.stringify(events()));
    expect(events().filter((e) => e.status === 'delivered')).toHaveLength(10);
    expect(mx.bodies).toHaveLength(10);
    // Still PIPELINING within a transaction (MAIL, RCPT and DATA together), never a body followed by the next envelope.
    expect(mx.chunks.some((c) => c.startsWith('MAIL FROM:') && c.includes('DATA\r\n'))).toBe(true);
    expect(mx.chunks.filter((c) => c.includes('\r\n.\r\nMAIL FROM:'))).toHaveLength(0);
  } finally {
    await engine.stop();
    await attemptLog.close();
    await partition.close();
    mx.server.close();
  }
});

test('a purge of 1,500 messages shares the synced writes: it does not wait out the attempt log\'s commit interval once per message', async () => {
  const connector = new CountingConnector();
  // The log's clock (jest's, through systemClock) also notes each commit that waits out its interval.
  const waiting = new Set<TimerHandle>();
  const logClock: Clock = {
    ...systemClock,
    setTimeout: (fn, ms) => {
      const timer = systemClock.setTimeout(() => {
        waiting.delete(timer);
        fn();
      }, ms);
      waiting.add(timer);
      return timer;
    },
  };
  // A 1 s interval: one message after another, this purge would wait it out 1,500 times (25 minutes).
  const { engine, partition, attemptLog, events } = await engineWith('purge', `routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]\n`, connector, 1000, logClock);
  for (let i = 0; i < 1500; i++) {
    await partition.appendMessage({ id: `p${i}`, from: 'a@shop.test', to: [`r${i}@gone.test`], received: Date.now(), via: 'http', size: 3 }, Buffer.from('x\r\n'));
  }
  await partition.appendMessage({ id: 'keep', from: 'a@shop.test', to: ['r@kept.test'], received: Date.now(), via: 'http', size: 3 }, Buffer.from('x\r\n'));
  let purged: number | undefined;
  void engine.purge({ domain: 'gone.test' }).then((n) => (purged = n));
  // Time moves only when a commit waits out its interval, a second at a time; two batches wait it twice.
  let intervals = 0;
  while (purged === undefined && intervals <= 2) {
    await waitUntil(() => purged !== undefined || waiting.size > 0, 10_000, () => JSON.stringify({ intervals, events: events().length }));
    if (purged !== undefined) break;
    await jest.advanceTimersByTimeAsync(1000);
    intervals++;
  }
  expect(purged).toBe(1500);
  expect(intervals).toBe(2);
  await attemptLog.close();
  const ev = events() as { event: string; status?: string; message_id: string; event_id: string }[];
  expect(ev).toHaveLength(1500);
  // A purge is its own kind of event, not a failed delivery: nothing was tried.
  expect(ev.every((e) => e.event === 'purged' && e.status === undefined && e.event_id)).toBe(true);
  expect([...partition.entries()].map((e) => e.id)).toEqual(['keep']);
  await engine.stop();
  await partition.close();
});

test('a message whose retry comes while a purge writes its records is purged, not also delivered, and its partition keeps delivering', async () => {
  const connector = new CountingConnector();
  // The attempt log waits 1 s per commit: the purge's `purged` events are being written for that long.
  const { engine, partition, attemptLog, events } = await engineWith('purge-race', `routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]\n`, connector, 1000);
  const now = Date.now();
  await partition.appendMessage({ id: 'race', from: 'a@shop.test', to: ['r@gone.test'], received: now, next: now + 500, via: 'http', size: 3 }, Buffer.from('id race\r\n'));
  engine.start();
  let purged: number | undefined;
  void engine.purge({ domain: 'gone.test' }).then((n) => (purged = n));
  // Its retry (at 500 ms) comes while the purge's events wait out the log's interval.
  await advanceUntil(() => purged !== undefined, 250, 40, () => JSON.stringify(engine.status()));
  expect(purged).toBe(1);
  // Later mail of the same partition still goes: no outcome of the purged message is held unrecorded, parking it.
  await partition.appendMessage({ id: 'after', from: 'a@shop.test', to: ['r@kept.test'], received: Date.now(), via: 'http', size: 3 }, Buffer.from('id after\r\n'));
  engine.schedule(partition.get('after')!);
  await advanceUntil(() => events().some((e) => e.message_id === 'after') && engine.status().inflight === 0, 250, 40, () => JSON.stringify(engine.status()));
  expect(engine.status()).toMatchObject({ inflight: 0, unrecorded: 0, parked: 0 });
  await engine.stop();
  await attemptLog.close();
  const ev = events() as { event: string; status?: string; message_id: string }[];
  expect(ev.map((e) => `${e.message_id}:${e.event}:${e.status ?? ''}`).sort()).toEqual(['after:delivery:delivered', 'race:purged:']);
  expect(connector.sent).toBe(1);
  await partition.close();
});

test('a purge of a paused destination removes its mail: queued behind the pause is not in flight', async () => {
  const connector = new CountingConnector();
  const { engine, partition, attemptLog, events } = await engineWith('purge-paused', `routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]\n`, connector);
  engine.pauseDestination({ domain: 'paused.test' });
  for (let i = 0; i < 5; i++) {
    await partition.appendMessage({ id: `h${i}`, from: 'a@shop.test', to: [`r${i}@paused.test`], received: Date.now(), via: 'http', size: 3 }, Buffer.from('x\r\n'));
  }
  engine.start();
  // Every message is taken up and waits in the paused destination's queue.
  const queued = (): number => engine.status().destinations.find((d) => d.key.endsWith('|paused.test'))?.queued ?? 0;
  await waitUntil(() => queued() === 5, 5000, () => JSON.stringify(engine.status()));
  expect(await engine.purge({ domain: 'paused.test' })).toBe(5);
  expect([...partition.entries()]).toEqual([]);
  expect(engine.status()).toMatchObject({ inflight: 0, destinations: [] });
  // Resumed: nothing of it goes out; later mail does.
  engine.resumeDestination({ domain: 'paused.test' });
  await partition.appendMessage({ id: 'after', from: 'a@shop.test', to: ['r@paused.test'], received: Date.now(), via: 'http', size: 3 }, Buffer.from('x\r\n'));
  engine.schedule([...partition.entries()][0]);
  await waitUntil(() => events().some((e) => e.message_id === 'after'), 5000);
  await engine.stop();
  await attemptLog.close();
  const ev = events() as { event: string; status?: string; message_id: string }[];
  expect(ev.map((e) => `${e.message_id}:${e.event}:${e.status ?? ''}`).sort()).toEqual([
    'after:delivery:delivered',
    ...[0, 1, 2, 3, 4].map((i) => `h${i}:purged:`),
  ]);
  expect(connector.opened).toBe(1);
  await partition.close();
});

describe('an outcome that cannot be recorded (a full disk)', () => {
  /** A connector whose MX accepts everything and notes which message each transaction carried. */
  function recordingConnector(sent: string[]): Connector {
    return {
      async open(target: Target, source: Source): Promise<OutboundSession> {
        return {
          info: { mxHost: target.host, mxIp: target.ip, port: target.port, helo: source.helo, via: 'test', connectMs: 0 },
          usable: true,
          send: async (_from, to, message) => {
            sent.push(/^id (\S+)/.exec(message.toString())![1]);
            return { recipients: to.map((rcpt) => ({ rcpt, reply: { code: 250, text: 'ok' }, outcome: 'delivered' as const })), envelopeMs: 0, dataMs: 0 };
          },
          close: () => undefined,
        };
      },
    };
  }

  test.each(['attempt log', 'done record'])('when the %s cannot be written, the message is held as sent: never sent again, its partition starts nothing, and it is recorded once writes succeed', async (what) => {
    const name = `unrecorded-${what.replace(' ', '-')}`;
    const config = parseConfig(deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]\ndelivery: { retry: [1s] }\n`));
    const partition = await SpoolPartition.open({ dir: join(dir, name, 'spool'), fsync: false });
    const attemptLog = new AttemptLog({ dir: join(dir, name, 'attempts'), name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
    const sent: string[] = [];
    const engine = new DeliveryEngine({ partitions: [partition], config, connector: recordingConnector(sent), router: new Router({ routes: config.routes, servers: [] }), attemptLog, logger: pino({ level: 'silent' }), nodeId: 'test', recordRetryMs: 20 });
    let full = true;
    const enospc = (): Promise<never> => Promise.reject(Object.assign(new Error('spool disk is full'), { code: 'ENOSPC' }));
    if (what === 'attempt log') {
      const write = attemptLog.write.bind(attemptLog);
      attemptLog.write = (events) => (full ? enospc() : write(events));
    } else {
      const markDone = partition.markDone.bind(partition);
      partition.markDone = (done) => (full ? enospc() : markDone(done));
    }
    const add = (id: string) => partition.appendMessage({ id, from: 'a@shop.test', to: [`${id}@x.test`], received: Date.now(), via: 'http', size: 8 }, Buffer.from(`id ${id}\r\n`));
    await add('m1');
    engine.start();
    try {
      await waitUntil(() => engine.status().unrecorded === 1, 5_000, () => JSON.stringify(engine.status()));
      // A message due now from the same partition waits: it is not sent while an outcome there is unrecorded.
      engine.schedule(await add('m2'));
      await waitUntil(() => engine.status().parked === 1, 5_000, () => JSON.stringify(engine.status()));
      expect(engine.describe('m2')?.why).toMatch(/until an outcome is recorded/);
      expect(sent).toEqual(['m1']);
      full = false;
      // The outcome is written again after recordRetryMs, and the parked message looks again after a second.
      await advanceUntil(() => partition.size === 0, 100, 100, () => JSON.stringify({ sent, status: engine.status() }));
    } finally {
      full = false;
      await engine.stop();
      await attemptLog.close();
    }
    expect(sent.sort()).toEqual(['m1', 'm2']);
    const ev = readAttempts<{ message_id: string; status: string }>(join(dir, name, 'attempts'));
    expect(ev.map((e) => `${e.message_id}:${e.status}`).sort()).toEqual(['m1:delivered', 'm2:delivered']);
    expect(engine.status()).toMatchObject({ unrecorded: 0, parked: 0, inflight: 0 });
    await partition.close();
  });
});

/** A connector that answers 250 and keeps each transaction's envelope. */
class EnvelopeRecorder implements Connector {
  readonly transactions: { from: string; to: string[] }[] = [];
  async open(target: Target, source: Source): Promise<OutboundSession> {
    let usable = true;
    return {
      info: { mxHost: target.host, mxIp: target.ip, port: target.port, helo: source.helo, via: 'test', connectMs: 0 },
      get usable() {
        return usable;
      },
      send: async (from, to) => {
        this.transactions.push({ from, to: [...to] });
        return { recipients: to.map((rcpt) => ({ rcpt, reply: { code: 250, text: 'ok' }, outcome: 'delivered' as const })), envelopeMs: 0, dataMs: 0 };
      },
      close: () => {
        usable = false;
      },
    };
  }
}

test('VERP: a message of a VERP pool goes one recipient per transaction, each from its own signed return path; other pools and the null sender keep theirs', async () => {
  const keyFile = join(dir, 'verp.key');
  writeFileSync(keyFile, 'a-verp-key-of-thirty-two-bytes!!');
  const rest = `routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]
vmtas: [{ name: v1, ip: 127.0.0.1, helo: v1.test }]
pools: [{ name: bulk, vmtas: [{ name: v1 }] }, { name: tx, vmtas: [{ name: v1 }] }]
inbound: { domains: [bounces.shop.test], verp: { domain: bounces.shop.test, secret_file: ${keyFile}, pools: [bulk] } }
`;
  const connector = new EnvelopeRecorder();
  const { engine, partition, attemptLog, events } = await engineWith('verp', rest, connector);
  const [a, b, c] = [newMessageId(), newMessageId(), newMessageId()];
  const add = (id: string, from: string, to: string[], pool: string) => partition.appendMessage({ id, from, to, pool, received: Date.now(), via: 'http', size: 3 }, Buffer.from('x\r\n'));
  await add(a, 'news@shop.test', ['r1@d1.test', 'r2@d1.test', 'r3@d2.test'], 'bulk');
  await add(b, 'news@shop.test', ['s1@d1.test', 's2@d1.test'], 'tx');
  await add(c, '', ['t1@d1.test', 't2@d1.test'], 'bulk');
  engine.start();
  await waitUntil(() => events().length === 7, 10_000, () => JSON.stringify(events()));
  await engine.stop();
  await attemptLog.close();
  await partition.close();

  const verp = new Verp({ domain: 'bounces.shop.test', prefix: 'bounce', secretFile: keyFile }, loadVerpSecret(keyFile));
  const ofA = connector.transactions.filter((t) => t.from.startsWith('bounce+'));
  expect(ofA.map((t) => t.to)).toEqual(expect.arrayContaining([['r1@d1.test'], ['r2@d1.test'], ['r3@d2.test']]));
  expect(ofA).toHaveLength(3);
  for (const t of ofA) expect(verp.read(t.from)).toEqual({ ok: true, messageId: a, recipient: t.to[0] });
  // Not in verp.pools: one transaction for the domain, the sender as given; the null sender is never VERP'd.
  expect(connector.transactions).toEqual(expect.arrayContaining([{ from: 'news@shop.test', to: ['s1@d1.test', 's2@d1.test'] }, { from: '', to: ['t1@d1.test', 't2@d1.test'] }]));
  expect(connector.transactions).toHaveLength(5);
  // The events keep the original sender.
  expect(events().filter((e) => e.message_id === a).map((e) => (e as unknown as { sender: string }).sender)).toEqual(['news@shop.test', 'news@shop.test', 'news@shop.test']);
});

test('a deferral caused only by the proxy link is retried within seconds, not after delivery.retry (1 h), and says error_kind proxy-link', async () => {
  // The link fails at connect (the proxy could not be reached), then mid-transaction (it went silent), then holds.
  let opened = 0;
  const connector: Connector = {
    open: async (target: Target, source: Source): Promise<OutboundSession> => {
      opened++;
      if (opened === 1) throw new ProxyConnectError('a', 'connect', 'proxy a: cannot connect: ECONNREFUSED');
      const lost = opened === 2;
      return acceptingSession(target, source.helo, {
        via: 'proxy:a',
        onSend: () => {
          // As ProxySession: a lost link leaves the session unusable (the helper marks it so when the send throws).
          if (lost) throw new VolleyError(PROXY_LINK_CODE, 'proxy a link lost: nothing from the peer in 2 intervals');
        },
      });
    },
  };
  const config = parseConfig(deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]\ndelivery: { retry: [1h] }\n`));
  const partition = await SpoolPartition.open({ dir: join(dir, 'link', 'spool'), fsync: false });
  const attemptLog = new AttemptLog({ dir: join(dir, 'link', 'attempts'), name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false, commitIntervalMs: 0 });
  const engine = new DeliveryEngine({ partitions: [partition], config, connector, router: new Router({ routes: config.routes, servers: [] }), attemptLog, logger: pino({ level: 'silent' }), nodeId: 'test', proxyLinkRetryMs: 50 });
  const events = (): { status: string; error_kind?: string; next_retry?: string; time: string }[] => readAttempts(join(dir, 'link', 'attempts'));
  await partition.appendMessage({ id: 'l1', from: 'a@shop.test', to: ['b@dest.test'], received: Date.now(), via: 'http', size: 3 }, Buffer.from('x\r\n'));
  engine.start();
  try {
    // Each deferral is retried after the link's 50 ms (fake time), not the hour.
    await advanceUntil(() => events().some((e) => e.status === 'delivered'), 50, 100, () => JSON.stringify(events()));
  } finally {
    await engine.stop();
    await attemptLog.close();
    await partition.close();
  }
  const ev = events();
  // Both deferrals are written (honest), each naming the link; each retry was due within the link delay, not the hour.
  expect(ev.map((e) => `${e.status}:${e.error_kind ?? ''}`)).toEqual(['deferred:proxy-link', 'deferred:proxy-link', 'delivered:']);
  for (const e of ev.slice(0, 2)) expect(Date.parse(e.next_retry!) - Date.parse(e.time)).toBeLessThan(60_000);
  expect(opened).toBe(3);
});

test('an attempt deferred by the proxy link for one domain and by the MX for another waits delivery.retry: the MX asked for it', async () => {
  const connector: Connector = {
    open: async (target: Target, source: Source): Promise<OutboundSession> => {
      if (target.ip === '127.0.0.1') throw new ProxyConnectError('a', 'connect', 'proxy a: cannot connect: ECONNREFUSED');
      return {
        info: { mxHost: target.host, mxIp: target.ip, port: target.port, helo: source.helo, via: 'proxy:a', connectMs: 0 },
        usable: true,
        send: async (_from, to) => ({ recipients: to.map((rcpt) => ({ rcpt, reply: { code: 451, enhanced: '4.7.1', text: 'greylisted' }, outcome: 'deferred' as const })), envelopeMs: 0, dataMs: 0 }),
        close: () => undefined,
      };
    },
  };
  const rest = `routes: [{ domain: link.test, host: 127.0.0.1, port: 25 }, { domain: "*", host: 127.0.0.3, port: 25 }]\ndelivery: { retry: [1h] }\n`;
  const config = parseConfig(deliveryConfigYaml(rest));
  const partition = await SpoolPartition.open({ dir: join(dir, 'mixed', 'spool'), fsync: false });
  const attemptLog = new AttemptLog({ dir: join(dir, 'mixed', 'attempts'), name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false, commitIntervalMs: 0 });
  const engine = new DeliveryEngine({ partitions: [partition], config, connector, router: new Router({ routes: config.routes, servers: [] }), attemptLog, logger: pino({ level: 'silent' }), nodeId: 'test', proxyLinkRetryMs: 50 });
  const events = (): { status: string; error_kind?: string; next_retry?: string; time: string }[] => readAttempts(join(dir, 'mixed', 'attempts'));
  await partition.appendMessage({ id: 'm1', from: 'a@shop.test', to: ['b@link.test', 'c@grey.test'], received: Date.now(), via: 'http', size: 3 }, Buffer.from('x\r\n'));
  engine.start();
  try {
    await waitUntil(() => events().length === 2, 10_000, () => JSON.stringify(events()));
  } finally {
    await engine.stop();
    await attemptLog.close();
    await partition.close();
  }
  const ev = events();
  expect(ev.map((e) => e.error_kind ?? '').sort()).toEqual(['', 'proxy-link']);
  // The hour (less the few ms between an event's time and the attempt's end), not the link's 50 ms.
  for (const e of ev) expect(Date.parse(e.next_retry!) - Date.parse(e.time)).toBeGreaterThan(3_590_000);
});

/** A connector whose MX defers every recipient. */
class DeferringConnector implements Connector {
  async open(target: Target, source: Source): Promise<OutboundSession> {
    const info = { mxHost: target.host, mxIp: target.ip, port: target.port, helo: source.helo, via: 'test', connectMs: 0 };
    return {
      info,
      usable: true,
      send: async (_from, to) => ({ recipients: to.map((rcpt) => ({ rcpt, reply: { code: 451, text: 'later' }, outcome: 'deferred' as const })), envelopeMs: 0, dataMs: 0 }),
      close: () => undefined,
    };
  }
}

test('a deferral that pauses its destination is registered with the throttle authority before its attempt is logged', async () => {
  const order: string[] = [];
  /** A worker's authority: the pause holds only after a round trip (to the node's primary). */
  class RoundTripAuthority extends LocalAuthority {
    override async onTemporaryFailure(key: ThrottleKey, domain: string, reply: SmtpReply): Promise<number> {
      await new Promise((r) => setImmediate(r));
      const pause = await super.onTemporaryFailure(key, domain, reply);
      order.push(`paused ${pause} ms`);
      return pause;
    }
  }
  const config = parseConfig(deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]\nbackoff: [{ destination: "*", code: 451, pause: 1h }]\ndelivery: { retry: [1h] }\n`));
  const throttles = new Throttles(config, () => Date.now());
  const partition = await SpoolPartition.open({ dir: join(dir, 'pause-first', 'spool'), fsync: false });
  const attemptLog = new AttemptLog({ dir: join(dir, 'pause-first', 'attempts'), name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false, commitIntervalMs: 0 });
  const write = attemptLog.write.bind(attemptLog);
  jest.spyOn(attemptLog, 'write').mockImplementation((events: readonly NewEvent[]) => {
    order.push(`logged ${events.map((e) => ('status' in e ? e.status : e.event)).join(',')}`);
    return write(events);
  });
  const connector = new DeferringConnector();
  const engine = new DeliveryEngine({ partitions: [partition], config, connector, router: new Router({ routes: config.routes, servers: [] }), attemptLog, logger: pino({ level: 'silent' }), nodeId: 'test', throttles, authority: new RoundTripAuthority(throttles) });
  await partition.appendMessage({ id: 'b1', from: 'a@shop.test', to: ['r@busy.test'], received: Date.now(), via: 'http', size: 3 }, Buffer.from('x\r\n'));
  engine.start();
  await waitUntil(() => order.length === 2, 5000, () => JSON.stringify(order));
  // Once the 4xx is in the attempt log, no worker starts another delivery to the destination: the pause holds already.
  expect(order).toEqual(['paused 3600000 ms', 'logged deferred']);
  await engine.stop();
  await attemptLog.close();
  await partition.close();
});

test("a drained message expires at its source's expiry, not at received + this node's max_lifetime", async () => {
  const { engine, partition, attemptLog, events } = await engineWith('drained-expiry', 'routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]\n', new DeferringConnector());
  const now = Date.now();
  // Both received now; this node's lifetime is days, the drained one's own expiry is in 30 s (before the 1-minute retry).
  await partition.appendMessage({ id: 'drained', from: 'a@shop.test', to: ['b@x.test'], received: now, expires: now + 30_000, via: 'drain', size: 3 }, Buffer.from('x\r\n'));
  await partition.appendMessage({ id: 'local', from: 'a@shop.test', to: ['b@x.test'], received: now, via: 'http', size: 3 }, Buffer.from('x\r\n'));
  engine.start();
  await waitUntil(() => events().length >= 2);
  await engine.stop();
  await attemptLog.close();
  expect(events().map((e) => `${e.message_id}:${e.status}`).sort()).toEqual(['drained:expired', 'local:deferred']);
  await partition.close();
});

test('a message an interrupted drain may have handed over is held at start: not delivered until it is scheduled again (its destination said it does not have it)', async () => {
  const connector = new CountingConnector();
  const { engine, partition, attemptLog, events } = await engineWith('held', `routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]\n`, connector);
  for (const id of ['free', 'held']) await partition.appendMessage({ id, from: 'a@shop.test', to: [`${id}@x.test`], received: Date.now(), via: 'http', size: 3 }, Buffer.from('x\r\n'));
  engine.start(new Set(['held']));
  await waitUntil(() => events().length >= 1);
  expect(events().map((e) => e.message_id)).toEqual(['free']);
  expect([...partition.entries()].map((e) => e.id)).toEqual(['held']);
  expect(engine.status().waiting).toBe(0); // nothing else is due: held is not merely behind
  engine.schedule(partition.get('held')!);
  await waitUntil(() => events().length >= 2);
  expect(events().map((e) => e.message_id).sort()).toEqual(['free', 'held']);
  await engine.stop();
  await attemptLog.close();
  await partition.close();
});

test('an operator\'s retry-now does not release a message an interrupted drain may have handed over: its destination may be delivering it', async () => {
  const connector = new CountingConnector();
  const { engine, partition, attemptLog, events } = await engineWith('held-retry', `routes: [{ domain: "*", host: 127.0.0.1, port: 25 }]\ndelivery: { retry: [1h] }\n`, connector);
  const now = Date.now();
  // Both deferred for an hour: "retry now" is what would make them due.
  for (const id of ['free', 'held']) await partition.appendMessage({ id, from: 'a@shop.test', to: [`${id}@x.test`], received: now, next: now + 3_600_000, via: 'http', size: 3 }, Buffer.from('x\r\n'));
  engine.start(new Set(['held']));
  const retried = engine.retryNow({});
  await waitUntil(() => events().length >= 1 && engine.status().inflight === 0, 10_000, () => JSON.stringify(engine.status()));
  expect(events().map((e) => e.message_id)).toEqual(['free']);
  expect(retried).toBe(1);
  expect(engine.retryNow({ id: 'held' })).toBe(0);
  expect(engine.describe('held')).toMatchObject({ why: expect.stringMatching(/interrupted drain/) });
  // Once its destination said it does not have it (reconcile.ts schedules it), it is the node's again: retry-now moves it.
  engine.schedule(partition.get('held')!);
  expect(engine.retryNow({ id: 'held' })).toBe(1);
  await waitUntil(() => events().length >= 2, 10_000, () => JSON.stringify(engine.status()));
  expect(events().map((e) => e.message_id).sort()).toEqual(['free', 'held']);
  expect(connector.sent).toBe(2);
  await engine.stop();
  await attemptLog.close();
  await partition.close();
});

test('8-bit mail to an MX without 8BITMIME is converted to 7 bit before DKIM signs it: it arrives quoted-printable and its signature verifies', async () => {
  // Not a question of time, and dkimverify runs as a real process: real timers.
  jest.useRealTimers();
  const mx = new ScriptedMx({ no8BitMime: true });
  await mx.listen();
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(dir, 'eight-bit-rsa.pem'), rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const records = { 'r1._domainkey.signed.example': `v=DKIM1; k=rsa; p=${rsa.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}` };
  const { engine, partition, attemptLog, events } = await engineWith(
    'eight-bit',
    `routes: [{ domain: "*", host: 127.0.0.1, port: ${mx.port} }]\ndkim:\n  - { domain: signed.example, selector: r1, algorithm: rsa-sha256, private_key_file: ${join(dir, 'eight-bit-rsa.pem')} }\n`,
    new DirectConnector(),
  );
  const body = Buffer.from('From: News <news@signed.example>\r\nTo: v@dest.test\r\nSubject: deals\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln\r\n', 'utf8');
  await partition.appendMessage({ id: 'eb1', from: 'news@signed.example', to: ['v@dest.test'], received: Date.now(), via: 'http', size: body.length }, body);
  try {
    engine.start();
    await waitUntil(() => events().some((e) => e.message_id === 'eb1'), 10_000, () => JSON.stringify(events()));
    expect(events()).toEqual([expect.objectContaining({ message_id: 'eb1', status: 'delivered' })]);
    const raw = mx.messages[0].raw;
    expect(isAscii(raw)).toBe(true);
    expect(raw.toString()).toMatch(/Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe aus K=C3=B6ln\r\n/);
    const out = await dkimVerify(dir, [raw], records);
    expect(out.results[0].signatures.map((x) => [x.a, x.ok])).toEqual([['rsa-sha256', true]]);
  } finally {
    await engine.stop();
    await attemptLog.close();
    await partition.close();
    await mx.close();
  }
});
