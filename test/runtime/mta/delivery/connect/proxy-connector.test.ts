// The connector's delivery links when a proxy dies without closing them (a
// host gone, a network pulled; here a relay that goes silent): its idle
// pooled links are dropped within the liveness bound instead of being handed
// out, a transaction in flight fails as "link lost" within it instead of
// waiting out its minutes-long budget, and the next session goes through the
// other proxy holding the sending IP (without a dial into the silent one). A busy proxy (a slow MX greeting) is
// not taken for dead. With the engine: the message whose transaction was in
// flight is deferred (error_kind proxy-link) and delivered through the other
// proxy within seconds, though delivery.retry says an hour. The interval is
// injected small (link.pingMs).
import { ProxyConnector, type ProxyConnectorOptions, type ProxyEndpoint } from '../../../../../runtime/mta/delivery/connect/proxy-connector';
import type { ProxyServer } from '../../../../../runtime/proxy/server';
import { ConnectError, type Source } from '../../../../../runtime/shared/smtp/connector';
import { startFreezableRelay, type FreezableRelay } from '../../../../helpers/freezable-relay';
import { captureLogger, newSecret, proxyTls, startProxy, waitUntil } from '../../../../helpers/proxy-fixtures';
import { ScriptedMx } from '../../../../helpers/scripted-mx';
import { tempDir } from '../../../../helpers/tmp';
import { join } from 'node:path';
import pino from 'pino';
import { EventLog as AttemptLog } from '../../../../../runtime/mta/events/event-log';
import { DeliveryEngine } from '../../../../../runtime/mta/delivery/engine';
import { Router } from '../../../../../runtime/mta/delivery/routing/router';
import { SpoolPartition } from '../../../../../runtime/mta/spool/partition';
import { parseConfig } from '../../../../../runtime/shared/config/load';
import { deliveryConfigYaml } from '../../../../helpers/config';
import { readAttempts } from '../../../../helpers/attempt-log';

const dir = tempDir('volley-proxy-connector-');
const secret = newSecret();
const PING_MS = 50;
/** The MX leg's timeouts: an hour, so only the liveness check can end a wait on a dead proxy. */
const slow = { connectMs: 3_600_000, greetingMs: 3_600_000, commandMs: 3_600_000, dataInitMs: 3_600_000, dataBlockMs: 3_600_000, finalDotMs: 3_600_000 };
let a: { server: ProxyServer; port: number };
let b: { server: ProxyServer; port: number };
let relay: FreezableRelay;
let viaRelay: ProxyEndpoint;
let direct: ProxyEndpoint;
let release: (() => void) | undefined;
const mx = new ScriptedMx({ holdUntil: () => (held ? new Promise<void>((r) => (release = r)) : Promise.resolve()) });
let held = false;
const connectors: ProxyConnector[] = [];

beforeEach(async () => {
  const tls = await proxyTls(dir);
  const log = captureLogger().logger;
  a = await startProxy({ name: 'proxy-a', tls, secret, sendingIps: ['127.0.0.2'], logger: log });
  b = await startProxy({ name: 'proxy-b', tls, secret, sendingIps: ['127.0.0.2'], logger: log });
  relay = await startFreezableRelay({ host: '127.0.0.1', port: a.port });
  viaRelay = { host: '127.0.0.1', port: relay.port, fingerprint: tls.fingerprint, name: 'a' };
  direct = { host: '127.0.0.1', port: b.port, fingerprint: tls.fingerprint, name: 'b' };
  held = false;
  release = undefined;
});

beforeAll(() => mx.listen());
afterAll(() => mx.close());

afterEach(async () => {
  release?.();
  for (const c of connectors.splice(0)) c.close();
  await relay.close();
  await Promise.all([a.server.stop(), b.server.stop()]);
});

function connector(options: Partial<ProxyConnectorOptions> = {}): ProxyConnector {
  const c = new ProxyConnector({
    proxies: { '127.0.0.2': [viaRelay, direct] },
    secret,
    timeouts: slow,
    // A dial into the silent relay gets its TCP accept and no TLS answer: it gives up after connectMs.
    link: { pingMs: PING_MS, connectMs: 500 },
    logger: captureLogger().logger,
    ...options,
  });
  connectors.push(c);
  return c;
}

const target = () => ({ host: 'mx.test', ip: '127.0.0.1', port: mx.port });
const source: Source = { ip: '127.0.0.2', helo: 'vmta-2.test' };
const message = (subject: string) => Buffer.from(`Subject: ${subject}\r\n\r\nbody\r\n`);

test('an idle pooled link to a proxy gone silent is dropped, never handed out; the next session goes through the other proxy', async () => {
  const c = connector();
  const first = await c.open(target(), source, { mode: 'may', policy: 'may' });
  expect(first.info.via).toBe('proxy:a');
  await first.send('s@volley.test', ['one@dest.test'], message('one'));
  first.close();
  expect(c.idleLinks()).toBe(1);
  relay.freeze();
  // 2 silent intervals, 2-3 pings: dropped, long before the pool's own idle time (60 s).
  await waitUntil(() => c.idleLinks() === 0, 5_000, () => `idle links: ${c.idleLinks()}`);
  // Straight to the other proxy: the silent one is tried last for a while, so no dial into it first.
  const dials = relay.accepted();
  const next = await c.open(target(), source, { mode: 'may', policy: 'may' });
  expect(next.info.via).toBe('proxy:b');
  expect(relay.accepted()).toBe(dials);
  await next.send('s@volley.test', ['two@dest.test'], message('two'));
  next.close();
  await mx.waitFor(2);
});

test('a transaction in flight when its proxy goes silent fails as "link lost" within the bound, not after its hour-long budget', async () => {
  const c = connector();
  held = true;
  const s = await c.open(target(), source, { mode: 'may', policy: 'may' });
  expect(s.info.via).toBe('proxy:a');
  let outcome: string | undefined;
  void s.send('s@volley.test', ['held@dest.test'], message('held')).then(
    () => (outcome = 'answered'),
    (err: { code?: string; message: string }) => (outcome = `${err.code}: ${err.message}`),
  );
  await waitUntil(() => release !== undefined, 5_000, () => 'the MX never saw the final dot');
  relay.freeze();
  await waitUntil(() => outcome !== undefined, 5_000, () => 'send still waiting');
  expect(outcome).toMatch(/^EPROXYLINK: proxy a link lost: nothing from the peer/);
  s.close();
  // Retried at once, through the other proxy, with no dial into the silent one first.
  held = false;
  const dials = relay.accepted();
  const again = await c.open(target(), source, { mode: 'may', policy: 'may' });
  expect(again.info.via).toBe('proxy:b');
  expect(relay.accepted()).toBe(dials);
  await again.send('s@volley.test', ['held@dest.test'], message('again'));
  again.close();
});

test('a proxy busy with a slow MX (no greeting for 20 intervals) keeps its link: pings are answered mid-connect', async () => {
  // An MX that greets only when told: the proxy's connect is under way all that time.
  const c = connector({ timeouts: { ...slow, greetingMs: 20 * PING_MS } });
  const { createServer } = await import('node:net');
  const silentMx = createServer(() => undefined);
  const port = await new Promise<number>((r) => silentMx.listen(0, '127.0.0.1', () => r((silentMx.address() as { port: number }).port)));
  try {
    // The greeting timeout is the proxy's answer about the MX, not a dead link.
    const err = await c.open({ host: 'mx.test', ip: '127.0.0.1', port }, { ...source }, { mode: 'may', policy: 'may' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).kind).toBe('timeout');
    expect((err as Error).message).toMatch(/via proxy a/);
  } finally {
    silentMx.close();
  }
});

test('with the engine: the message in flight when its proxy goes silent is deferred as proxy-link and delivered through the other proxy, not an hour later', async () => {
  const c = connector();
  held = true;
  const config = parseConfig(
    deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: ${mx.port} }]
vmtas: [{ name: v2, ip: 127.0.0.2, helo: vmta-2.test }]
pools: [{ name: p, vmtas: [{ name: v2 }] }]
delivery: { retry: [1h] }
`),
  );
  const partition = await SpoolPartition.open({ dir: join(dir, 'engine', 'spool'), fsync: false });
  const attemptLog = new AttemptLog({ dir: join(dir, 'engine', 'attempts'), name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false, commitIntervalMs: 0 });
  const engine = new DeliveryEngine({ partitions: [partition], config, connector: c, router: new Router({ routes: config.routes, servers: [] }), attemptLog, logger: pino({ level: 'silent' }), nodeId: 'test', proxyLinkRetryMs: 0 });
  const events = (): { status: string; error_kind?: string; via?: string }[] => readAttempts(join(dir, 'engine', 'attempts'));
  // proxyLinkRetryMs 0: the link-only deferral is due again at once (delivery.retry would say an hour), so nothing here waits on a timer.
  await partition.appendMessage({ id: 'e1', from: 's@volley.test', to: ['in-flight@dest.test'], pool: 'p', received: Date.now(), via: 'http', size: 3 }, Buffer.from('x\r\n'));
  engine.start();
  try {
    // On the wire through proxy a, its final dot held by the MX: then the proxy goes silent.
    await waitUntil(() => release !== undefined, 10_000, () => 'the MX never saw the final dot');
    held = false;
    relay.freeze();
    await waitUntil(() => events().some((e) => e.status === 'delivered'), 10_000, () => JSON.stringify(events()));
  } finally {
    await engine.stop();
    await attemptLog.close();
    await partition.close();
  }
  expect(events().map((e) => `${e.status}:${e.error_kind ?? ''}:${e.via}`)).toEqual(['deferred:proxy-link:proxy:a', 'delivered::proxy:b']);
});
