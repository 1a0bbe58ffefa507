import { ProxyAuthority } from '../../../runtime/mta/delivery/throttle/proxy-authority';
import { LocalAuthority } from '../../../runtime/mta/delivery/throttle/throttle-authority';
import { Throttles } from '../../../runtime/mta/delivery/throttle/throttles';
import type { ProxyServer } from '../../../runtime/proxy/server';
import type { ProxyEndpoint } from '../../../runtime/shared/proxy-protocol';
import { captureLogger, newSecret, proxyTls, startProxy, waitUntil, type ProxyTls } from '../../helpers/proxy-fixtures';
import { getFreePort } from '../../helpers/postfix-tools';
import { tempDir } from '../../helpers/tmp';
import { throttleKey } from '../../../runtime/mta/delivery/throttle/throttle-key';

const dir = tempDir('volley-proxy-control-');
const secret = newSecret();
let tls: ProxyTls;
const servers: ProxyServer[] = [];
const authorities: ProxyAuthority[] = [];
/** What the MTAs of the current test logged, for a failure to show. */
let mtaLogs: (() => string)[] = [];

beforeAll(async () => {
  tls = await proxyTls(dir);
});

afterEach(async () => {
  for (const a of authorities.splice(0)) a.close();
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function proxy(merge: 'average' | 'sum', port = 0): Promise<{ server: ProxyServer; endpoint: ProxyEndpoint }> {
  const { server, port: p } = await startProxy({ name: 'proxy-c', tls, secret, sendingIps: ['127.0.0.2'], logger: captureLogger().logger, throttleMerge: merge, listen: { address: '127.0.0.1', port } });
  servers.push(server);
  return { server, endpoint: endpointAt(p) };
}

/** Where the MTAs look for the proxy on `port`, whether or not it is up. */
function endpointAt(port: number): ProxyEndpoint {
  return { host: '127.0.0.1', port, fingerprint: tls.fingerprint, name: 'c' };
}

/** Three MTAs: keys from 127.0.0.2 go to the proxy, any other key stays local. */
function mtas(endpoint: ProxyEndpoint): ProxyAuthority[] {
  const logs = [1, 2, 3].map(() => captureLogger());
  mtaLogs = logs.map((l) => l.text);
  const three = [1, 2, 3].map(
    (i) =>
      new ProxyAuthority({
        proxyFor: (key) => (key.source === '127.0.0.2' ? endpoint : undefined),
        fallback: new LocalAuthority(new Throttles({ throttles: [], backoff: [], rollups: [] })),
        secret,
        name: `mta-${i}`,
        // A dial that lands in the stopping proxy's backlog hangs until the handshake timeout:
        // short here, so the restart test measures reconnection rather than that timeout.
        link: { backoffMinMs: 50, backoffMaxMs: 200, answerMs: 2_000, connectMs: 1_000, handshakeMs: 1_500 },
        logger: logs[i - 1].logger,
      }),
  );
  authorities.push(...three);
  return three;
}

const key = '127.0.0.2|gmail';
/** The same key as the MTA's authority takes it (typed; `key` is its id, as the proxy counts it). */
const tkey = throttleKey('127.0.0.2', 'gmail');
const oneConn = { maxConnections: 1, maxMessagesPerHour: Infinity };

test('a cluster limit of 1 connection: one MTA of three holds it; after its release another gets it', async () => {
  const { server, endpoint } = await proxy('average');
  const [a, b, c] = mtas(endpoint);
  const first = await Promise.all([a, b, c].map((m) => m.tryConnection(tkey, oneConn)));
  expect(first.filter(Boolean)).toHaveLength(1);
  const holder = [a, b, c][first.indexOf(true)];
  const others = [a, b, c].filter((m) => m !== holder);
  expect(await others[0].tryConnection(tkey, oneConn)).toBe(false);
  expect(await holder.tryConnection(tkey, oneConn)).toBe(false);
  holder.releaseConnection(tkey);
  await waitUntil(() => server.throttles.connections(key) === 0);
  expect(await others[1].tryConnection(tkey, oneConn)).toBe(true);
  expect(await others[0].tryConnection(tkey, oneConn)).toBe(false);
  // Each MTA has one control connection, whatever it asked.
  expect(server.stats().authenticated).toBe(3);
});

test('with sum, limits 1+1+1 give three connections at once', async () => {
  const { server, endpoint } = await proxy('sum');
  const [a, b, c] = mtas(endpoint);
  // Each MTA registers its limit with a first ask (one of them gets the permit)...
  const first = await Promise.all([a, b, c].map((m) => m.tryMessage(tkey, { maxConnections: 1, maxMessagesPerHour: 1000 })));
  expect(first.every((r) => r.ok)).toBe(true);
  expect(server.throttles.limitsFor(key)?.maxConnections).toBe(3);
  expect(await Promise.all([a, b, c].map((m) => m.tryConnection(tkey, oneConn)))).toEqual([true, true, true]);
  expect(await a.tryConnection(tkey, oneConn)).toBe(false);
});

test('an hourly limit of 5 holds across the three MTAs', async () => {
  const { endpoint } = await proxy('average');
  const [a, b, c] = mtas(endpoint);
  const hourly = { maxConnections: 10, maxMessagesPerHour: 5 };
  const results = [];
  for (const m of [a, b, c, a, b, c, a]) results.push(await m.tryMessage(tkey, hourly));
  expect(results.map((r) => r.ok)).toEqual([true, true, true, true, true, false, false]);
  const denied = results[5] as { ok: false; waitMs: number };
  expect(denied.waitMs).toBeGreaterThan(1_000);
  // Keys no proxy decides stay local: MTA a's own limit, untouched by the others.
  for (let i = 0; i < 5; i++) expect((await a.tryMessage(throttleKey('127.0.0.9', 'gmail'), hourly)).ok).toBe(true);
  expect((await a.tryMessage(throttleKey('127.0.0.9', 'gmail'), hourly)).ok).toBe(false);
  expect((await b.tryMessage(throttleKey('127.0.0.9', 'gmail'), hourly)).ok).toBe(true);
});

test('a proxy restart: "not now" while it is down, then reconnect, reclaimed permits, and permits work again', async () => {
  const first = await proxy('average');
  const [a, b, c] = mtas(first.endpoint);
  expect(await a.tryConnection(tkey, oneConn)).toBe(true);
  expect(await b.tryConnection(tkey, oneConn)).toBe(false);
  await first.server.stop();
  servers.splice(servers.indexOf(first.server), 1);
  await waitUntil(() => !a.connected(tkey) && !b.connected(tkey) && !c.connected(tkey));
  // Down: deliveries through the proxy wait.
  expect(await b.tryConnection(tkey, oneConn)).toBe(false);
  const wait = await c.tryMessage(tkey, { maxConnections: 1, maxMessagesPerHour: 10 });
  expect(wait.ok).toBe(false);
  expect((wait as { waitMs: number }).waitMs).toBeGreaterThanOrEqual(1_000);
  const second = await proxy('average', first.endpoint.port);
  const seen = (): string => `proxy counts ${second.server.throttles.connections(key)} connection permits; MTA logs:\n${mtaLogs.map((t) => t()).join('')}`;
  await waitUntil(() => a.connected(tkey) === true && b.connected(tkey) === true && c.connected(tkey) === true, 10_000, seen);
  // a still holds its permit: it re-claimed it on the new proxy.
  await waitUntil(() => second.server.throttles.connections(key) === 1, 10_000, seen);
  expect(await b.tryConnection(tkey, oneConn)).toBe(false);
  a.releaseConnection(tkey);
  await waitUntil(() => second.server.throttles.connections(key) === 0);
  expect(await b.tryConnection(tkey, oneConn)).toBe(true);
  expect(await c.tryConnection(tkey, oneConn)).toBe(false);
  expect((await c.tryMessage(tkey, { maxConnections: 1, maxMessagesPerHour: 10 })).ok).toBe(true);
});

test('a link that failed redials by itself when its backoff ends, even if the retry timer fires before Date.now() gets there', async () => {
  // A proxy that is not up yet.
  const port = await getFreePort();
  const [m] = mtas(endpointAt(port));
  const down = await m.tryMessage(tkey, { maxConnections: 1, maxMessagesPerHour: 10 });
  expect(down.ok).toBe(false); // refused: the link waits out its backoff (50 ms here)
  await proxy('average', port);
  // From now on the wall clock reads 100 ms behind the timers, as it may by a
  // millisecond or so: the retry timer fires "before" the backoff has ended.
  const realNow = Date.now.bind(Date);
  const clock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - 100);
  try {
    // No delivery asks: the link must come up on its own.
    await waitUntil(() => m.connected(tkey) === true, 3_000, () => mtaLogs.map((t) => t()).join(''));
  } finally {
    clock.mockRestore();
  }
});

test('an MTA whose control connection goes away frees its permits', async () => {
  const { server, endpoint } = await proxy('average');
  const [a, b] = mtas(endpoint);
  expect(await a.tryConnection(tkey, oneConn)).toBe(true);
  expect(await b.tryConnection(tkey, oneConn)).toBe(false);
  a.close();
  await waitUntil(() => server.throttles.connections(key) === 0);
  expect(await b.tryConnection(tkey, oneConn)).toBe(true);
});
