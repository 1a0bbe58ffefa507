// The MTA's control link to a proxy (runtime/mta/delivery/proxy-authority.ts)
// after a long outage: its redials stay at most 5 s apart (its backoff's
// ceiling), so a proxy back after minutes (a replacement) is used within seconds, not
// after the half minute the backoff used to reach. Fake timers stand in for
// the ten minutes; the dials are real (refused, then accepted, on loopback).
// And either end of the link going silent without a close (below).
import { ProxyAuthority } from '../../../../../runtime/mta/delivery/throttle/proxy-authority';
import { LocalAuthority } from '../../../../../runtime/mta/delivery/throttle/throttle-authority';
import { Throttles } from '../../../../../runtime/mta/delivery/throttle/throttles';
import type { ProxyServer } from '../../../../../runtime/proxy/server';
import type { ProxyEndpoint } from '../../../../../runtime/shared/proxy-protocol';
import { startFreezableRelay, type FreezableRelay } from '../../../../helpers/freezable-relay';
import { captureLogger, newSecret, proxyTls, startProxy, waitUntil } from '../../../../helpers/proxy-fixtures';
import { getFreePort } from '../../../../helpers/postfix-tools';
import { tempDir } from '../../../../helpers/tmp';
import { throttleKey } from '../../../../../runtime/mta/delivery/throttle/throttle-key';

const dir = tempDir('volley-proxy-authority-');
const secret = newSecret();
const key = '127.0.0.2|example.test';
/** The same key as the MTA's authority takes it (typed; `key` is its id, as the proxy counts it). */
const tkey = throttleKey('127.0.0.2', 'example.test');
const hourly = { maxConnections: 1, maxMessagesPerHour: 10 };
/** The longest a proxy's mail may wait for the link once the proxy is back (runtime: CONTROL_BACKOFF_MAX_MS). */
const CEILING_MS = 5_000;
let authority: ProxyAuthority | undefined;
let server: ProxyServer | undefined;

afterEach(async () => {
  authority?.close();
  await server?.stop();
  jest.useRealTimers();
});

/**
 * Lets real I/O (a dial refused or accepted on loopback) run while the timers
 * are fake: waitUntil sleeps on a timer, which would not fire here. Event-loop
 * turns only, no clock: true once `check` holds, false if it never does.
 */
async function settles(check: () => boolean): Promise<boolean> {
  for (let turn = 0; turn < 20_000; turn++) {
    if (check()) return true;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return check();
}

test('after ten minutes without its proxy, the link redials at most 5 s apart and is up that soon after the proxy is back', async () => {
  const tls = await proxyTls(dir);
  const port = await getFreePort();
  jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
  const log = captureLogger();
  authority = new ProxyAuthority({
    proxyFor: () => ({ host: '127.0.0.1', port, fingerprint: tls.fingerprint, name: 'p' }),
    fallback: new LocalAuthority(new Throttles({ throttles: [], backoff: [], rollups: [] })),
    secret,
    name: 'mta',
    logger: log.logger,
  });
  const failures = (): number[] => log.lines().filter((l) => String(l.msg).startsWith('throttles: control channel to proxy failed')).map((l) => Number(l.retry_ms));
  // The proxy is away: the first ask is refused and waits ("not now").
  expect((await authority.tryMessage(tkey, hourly)).ok).toBe(false);
  expect(failures()).toHaveLength(1);

  // Ten minutes away: each retry timer fires, its dial is refused, the next wait is logged.
  let away = 0;
  while (away < 600_000) {
    const waits = failures();
    const wait = waits[waits.length - 1] as number;
    await jest.advanceTimersByTimeAsync(wait);
    away += wait;
    expect(await settles(() => failures().length > waits.length)).toBe(true);
  }
  // Doubling from 500 ms up to the ceiling, and there since.
  expect(failures().slice(0, 5)).toEqual([500, 1_000, 2_000, 4_000, CEILING_MS]);
  expect(Math.max(...failures())).toBe(CEILING_MS);

  // Back (a replacement on the same address): up by the next redial, at most the ceiling later.
  ({ server } = await startProxy({ name: 'p', tls, secret, sendingIps: ['127.0.0.2'], logger: captureLogger().logger, listen: { address: '127.0.0.1', port } }));
  await jest.advanceTimersByTimeAsync(CEILING_MS);
  expect(await settles(() => authority?.connected(tkey) === true)).toBe(true);
  expect((await authority.tryMessage(tkey, hourly)).ok).toBe(true);
});

// A proxy, or an MTA, that dies without closing the control connection (a
// host gone, a network pulled: here a relay that goes silent both ways).
// The ping interval is injected small (link.pingMs); the MTA announces it in
// its hello, and the proxy watches at that pace (heartbeat.ts).
describe('a control link whose other end goes silent', () => {
  const PING_MS = 50;
  const permit = { maxConnections: 1, maxMessagesPerHour: 10 };
  let relay: FreezableRelay | undefined;
  const others: ProxyAuthority[] = [];

  afterEach(async () => {
    for (const o of others.splice(0)) o.close();
    await relay?.close();
    relay = undefined;
  });

  async function throughRelay(): Promise<{ endpoint: ProxyEndpoint; direct: ProxyEndpoint }> {
    const tls = await proxyTls(dir);
    let port: number;
    ({ server, port } = await startProxy({ name: 'p', tls, secret, sendingIps: ['127.0.0.2'], logger: captureLogger().logger }));
    relay = await startFreezableRelay({ host: '127.0.0.1', port });
    return {
      endpoint: { host: '127.0.0.1', port: relay.port, fingerprint: tls.fingerprint, name: 'p' },
      direct: { host: '127.0.0.1', port, fingerprint: tls.fingerprint, name: 'p' },
    };
  }

  function authorityFor(endpoint: ProxyEndpoint): ProxyAuthority {
    const a = new ProxyAuthority({
      proxyFor: () => endpoint,
      fallback: new LocalAuthority(new Throttles({ throttles: [], backoff: [], rollups: [] })),
      secret,
      name: 'mta',
      // A grant is waited for an hour: only the liveness check can end the wait on a dead proxy.
      link: { pingMs: PING_MS, answerMs: 3_600_000, connectMs: 500, backoffMinMs: 50, backoffMaxMs: 100 },
      logger: captureLogger().logger,
    });
    others.push(a);
    return a;
  }

  test('the MTA takes a silent proxy for dead within the bound: its pending ask is answered "not now", and the link redials once the network is back', async () => {
    const { endpoint } = await throughRelay();
    const a = authorityFor(endpoint);
    expect((await a.tryMessage(tkey, hourly)).ok).toBe(true);
    relay!.freeze();
    // Asked while the proxy is silent: the acquire goes out and is never answered.
    let answer: boolean | undefined;
    void a.tryMessage(tkey, hourly).then((r) => (answer = r.ok));
    await waitUntil(() => answer !== undefined, 5_000, () => `connected: ${String(a.connected(tkey))}`);
    expect(answer).toBe(false);
    expect(a.connected(tkey)).toBe(false);
    relay!.thaw();
    await waitUntil(() => a.connected(tkey) === true, 5_000, () => `relay connections: ${relay!.accepted()}`);
    expect((await a.tryMessage(tkey, hourly)).ok).toBe(true);
  });

  test('the proxy takes a silent MTA for dead within the bound and frees its connection permits for the others', async () => {
    const { endpoint, direct } = await throughRelay();
    const gone = authorityFor(endpoint);
    const other = authorityFor(direct);
    expect(await gone.tryConnection(tkey, permit)).toBe(true);
    expect(await other.tryConnection(tkey, permit)).toBe(false);
    // The first MTA's host dies: nothing more from it, not even a close.
    relay!.freeze();
    // 3 silent intervals on the proxy's side, not client_idle_timeout (5 min): the permit is free again.
    await waitUntil(() => server!.throttles.connections(key) === 0, 5_000, () => `permits held: ${server!.throttles.connections(key)}`);
    expect(await other.tryConnection(tkey, permit)).toBe(true);
  });
});
