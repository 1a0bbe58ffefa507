// MX failover as Postfix does it, against scripted MXes on loopback: an MX
// that will not talk (4xx/5xx greeting, EHLO and HELO refused) hands the
// delivery to the next one, with delivery.mx_address_limit addresses and
// delivery.mx_session_limit sessions per delivery (Postfix: 5 and 2).
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { parseConfig } from '../../../../runtime/shared/config/load';
import { EventLog as AttemptLog } from '../../../../runtime/mta/events/event-log';
import { DeliveryEngine } from '../../../../runtime/mta/delivery/engine';
import { DirectConnector } from '../../../../runtime/mta/delivery/connect/direct-connector';
import { Router, type MxHost, type Route } from '../../../../runtime/mta/delivery/routing/router';
import { SpoolPartition } from '../../../../runtime/mta/spool/partition';
import { listen } from '../../../../runtime/shared/listen';
import { deliveryConfigYaml } from '../../../helpers/config';
import { ScriptedMx, type ScriptedMxOptions } from '../../../helpers/scripted-mx';
import { tempDir } from '../../../helpers/tmp';
import { readAttempts } from '../../../helpers/attempt-log';
import { waitUntil } from '../../../helpers/proxy-fixtures';

const dir = tempDir();

/** MX records cannot carry a port: the test's MX hosts come from here instead of DNS, each on its own loopback port. */
class FixedRouter extends Router {
  constructor(private readonly hosts: MxHost[]) {
    super({ routes: [], servers: [] });
  }
  override async resolve(): Promise<Route> {
    return { kind: 'hosts', source: 'mx', hosts: this.hosts };
  }
}

/** An MX that greets, then refuses EHLO and HELO alike (RFC 5321 4.3.2: 550/502). */
async function ehloRefusingMx(): Promise<{ server: Server; port: number; connections: () => number; quits: () => number }> {
  let connections = 0;
  let quits = 0;
  const server = createServer((s) => {
    connections++;
    s.write('220 picky.test ESMTP\r\n');
    let rest = '';
    s.on('data', (d: Buffer) => {
      const lines = (rest + d.toString('latin1')).split('\r\n');
      rest = lines.pop()!;
      for (const line of lines) s.write(/^quit/i.test(line) ? '221 bye\r\n' : '550 5.7.1 not talking to you\r\n');
      if (lines.some((l) => /^quit/i.test(l))) {
        quits++;
        s.end();
      }
    });
    s.on('error', () => undefined);
  });
  await listen(server, 0, '127.0.0.1');
  const a = server.address();
  return { server, port: typeof a === 'object' && a ? a.port : 0, connections: () => connections, quits: () => quits };
}

type Ev = { message_id: string; status: string; mx_host?: string; smtp_code?: number; error_kind?: string };

/** Delivers `ids` (one recipient each) to `hosts` over one connection at a time; `delivery` adds keys to the delivery section. */
async function run(name: string, hosts: MxHost[], delivery: string, ids: string[], done: (ev: Ev[]) => boolean): Promise<Ev[]> {
  const config = parseConfig(deliveryConfigYaml(`routes: []\ndelivery: { retry: [1h]${delivery} }\nthrottles: [{ destination: "*", max_connections: 1 }]\n`));
  const partition = await SpoolPartition.open({ dir: join(dir, name, 'spool'), fsync: false });
  const attemptLog = new AttemptLog({ dir: join(dir, name, 'attempts'), name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  const engine = new DeliveryEngine({ partitions: [partition], config, connector: new DirectConnector(), router: new FixedRouter(hosts), attemptLog, logger: pino({ level: 'silent' }), nodeId: 'test' });
  const events = (): Ev[] => readAttempts<Ev>(join(dir, name, 'attempts'));
  for (const id of ids) await partition.appendMessage({ id, from: 'a@shop.test', to: [`${id}@dest.test`], received: Date.now(), via: 'http', size: 20 }, Buffer.from(`Subject: ${id}\r\n\r\nhello\r\n`));
  try {
    engine.start();
    await waitUntil(() => done(events()) && engine.status().inflight === 0, 15_000, () => JSON.stringify({ events: events(), status: engine.status() }));
    return events();
  } finally {
    await engine.stop();
    await attemptLog.close();
    await partition.close();
  }
}

const host = (name: string, port: number): MxHost => ({ host: name, port, preference: 10, ips: ['127.0.0.1'] });

async function withMxes<T>(options: ScriptedMxOptions[], body: (mxes: ScriptedMx[]) => Promise<T>): Promise<T> {
  const mxes = options.map((o) => new ScriptedMx(o));
  try {
    for (const mx of mxes) await mx.listen();
    return await body(mxes);
  } finally {
    for (const mx of mxes) await mx.close();
  }
}

test.each([
  ['a 554 greeting', [554, 'no service here'] as [number, string]],
  ['a 421 greeting', [421, 'busy'] as [number, string]],
])('%s from the first MX: the mail goes to the second, in the same delivery', async (_what, greeting) => {
  await withMxes([{ greeting }, {}], async ([first, second]) => {
    const ev = await run(`greeting-${greeting[0]}`, [host('mx1.dest.test', first.port), host('mx2.dest.test', second.port)], '', ['g1'], (e) => e.length === 1);
    expect(ev).toEqual([expect.objectContaining({ message_id: 'g1', status: 'delivered', mx_host: 'mx2.dest.test' })]);
    expect(first.connections).toBe(1);
    expect(second.messages).toHaveLength(1);
  });
});

test('EHLO and HELO refused by the first MX: the mail goes to the second', async () => {
  const picky = await ehloRefusingMx();
  try {
    await withMxes([{}], async ([second]) => {
      const ev = await run('ehlo-refused', [host('mx1.dest.test', picky.port), host('mx2.dest.test', second.port)], '', ['e1'], (e) => e.length === 1);
      expect(ev).toEqual([expect.objectContaining({ message_id: 'e1', status: 'delivered', mx_host: 'mx2.dest.test' })]);
      expect(picky.connections()).toBe(1);
      // The refusing MX was left with a QUIT, not a connection held open.
      await waitUntil(() => picky.quits() === 1);
    });
  } finally {
    picky.server.close();
  }
});

test('every MX refuses to talk (554 greetings): the mail is deferred, not failed, after each was tried once (Postfix smtp_skip_5xx_greeting)', async () => {
  await withMxes([{ greeting: [554, 'go away'] }, { greeting: [554, 'go away too'] }], async (mxes) => {
    const ev = await run('all-refuse', mxes.map((mx, i) => host(`mx${i + 1}.dest.test`, mx.port)), '', ['r1'], (e) => e.length === 1);
    expect(ev).toEqual([expect.objectContaining({ message_id: 'r1', status: 'deferred', smtp_code: 554, error_kind: 'greeting-rejected' })]);
    expect(mxes.map((mx) => mx.connections)).toEqual([1, 1]);
  });
});

describe('delivery.mx_address_limit (default 5)', () => {
  const sixth = (mxes: ScriptedMx[]): MxHost[] => mxes.map((mx, i) => host(`mx${i + 1}.dest.test`, mx.port));
  const busy: ScriptedMxOptions = { greeting: [421, 'busy'] };

  test('five busy MXes and a good sixth: the sixth is past the limit, and the mail is deferred', async () => {
    await withMxes([busy, busy, busy, busy, busy, {}], async (mxes) => {
      const ev = await run('address-limit', sixth(mxes), '', ['a1'], (e) => e.length === 1);
      expect(ev).toEqual([expect.objectContaining({ message_id: 'a1', status: 'deferred' })]);
      expect(mxes.map((mx) => mx.connections)).toEqual([1, 1, 1, 1, 1, 0]);
    });
  });

  test('mx_address_limit: 6 reaches the sixth', async () => {
    await withMxes([busy, busy, busy, busy, busy, {}], async (mxes) => {
      const ev = await run('address-limit-6', sixth(mxes), ', mx_address_limit: 6', ['a2'], (e) => e.length === 1);
      expect(ev).toEqual([expect.objectContaining({ message_id: 'a2', status: 'delivered', mx_host: 'mx6.dest.test' })]);
    });
  });
});

describe('delivery.mx_session_limit (default 2)', () => {
  // The first two MXes close the session with a 421 at RCPT: each takes one message down with it.
  const closing: ScriptedMxOptions = { rcpt: () => [421, '4.3.2 closing, try another MX'] };
  const hosts = (mxes: ScriptedMx[]): MxHost[] => mxes.map((mx, i) => host(`mx${i + 1}.dest.test`, mx.port));

  test('a session ended early hands the queue to the next MX; after two sessions the delivery ends, and the rest waits for the next one (from the first MX)', async () => {
    await withMxes([closing, closing, {}], async (mxes) => {
      const ev = await run('session-limit', hosts(mxes), '', ['s1', 's2', 's3'], (e) => e.length === 3);
      expect(ev.map((e) => e.status)).toEqual(['deferred', 'deferred', 'deferred']);
      expect(mxes.map((mx) => mx.connections)).toEqual([2, 1, 0]);
    });
  });

  test('mx_session_limit: 3 lets the third session deliver what is left', async () => {
    await withMxes([closing, closing, {}], async (mxes) => {
      const ev = await run('session-limit-3', hosts(mxes), ', mx_session_limit: 3', ['t1', 't2', 't3'], (e) => e.length === 3);
      expect(ev.map((e) => `${e.status}:${e.mx_host}`)).toEqual(['deferred:mx1.dest.test', 'deferred:mx2.dest.test', 'delivered:mx3.dest.test']);
      expect(mxes.map((mx) => mx.connections)).toEqual([1, 1, 1]);
    });
  });
});
