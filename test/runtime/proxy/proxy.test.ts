import { createServer, type Server, type Socket } from 'node:net';
import { ProxyConnector, type ProxyConnectorOptions, type ProxyEndpoint } from '../../../runtime/mta/delivery/connect/proxy-connector';
import type { ProxyServer } from '../../../runtime/proxy/server';
import { ConnectError, type Source, type TlsRequirement } from '../../../runtime/shared/smtp/connector';
import { mxTrust } from '../../../runtime/shared/smtp/mx-trust';
import { getFreePort } from '../../helpers/postfix-tools';
import { captureLogger, newSecret, proxyTls, startProxy, waitUntil, type ProxyTls } from '../../helpers/proxy-fixtures';
import { ScriptedMx } from '../../helpers/scripted-mx';
import { createTestCa } from '../../helpers/test-ca';
import { startTlsMx } from '../../helpers/starttls-mx';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir('volley-proxy-e2e-');
const secret = newSecret();
const fast = { connectMs: 1_000, greetingMs: 500, commandMs: 2_000, dataInitMs: 2_000, dataBlockMs: 2_000, finalDotMs: 2_000 };
let tls: ProxyTls;
let a: { server: ProxyServer; port: number };
let b: { server: ProxyServer; port: number };
let endpointA: ProxyEndpoint;
let endpointB: ProxyEndpoint;
const mx = new ScriptedMx({ rcpt: (r) => (r.startsWith('nobody@') ? [550, '5.1.1 no such user'] : undefined) });
const connectors: ProxyConnector[] = [];
const servers: Server[] = [];

beforeAll(async () => {
  tls = await proxyTls(dir);
  const log = captureLogger().logger;
  a = await startProxy({ name: 'proxy-a', tls, secret, sendingIps: ['127.0.0.2', '127.0.0.3'], logger: log });
  b = await startProxy({ name: 'proxy-b', tls, secret, sendingIps: ['127.0.0.4', '127.0.0.5'], logger: log });
  endpointA = { host: '127.0.0.1', port: a.port, fingerprint: tls.fingerprint, name: 'a' };
  endpointB = { host: '127.0.0.1', port: b.port, fingerprint: tls.fingerprint, name: 'b' };
  await mx.listen();
});

afterAll(async () => {
  for (const c of connectors) c.close();
  for (const s of servers) s.close();
  await Promise.all([a.server.stop(), b.server.stop(), mx.close()]);
});

function connector(options: Partial<ProxyConnectorOptions> = {}): ProxyConnector {
  const c = new ProxyConnector({
    proxies: { '127.0.0.2': [endpointA], '127.0.0.3': [endpointA], '127.0.0.4': [endpointB], '127.0.0.5': [endpointB] },
    secret,
    timeouts: fast,
    logger: captureLogger().logger,
    ...options,
  });
  connectors.push(c);
  return c;
}

const target = () => ({ host: 'mx.test', ip: '127.0.0.1', port: mx.port });
const source = (ip: string, helo = `vmta-${ip.split('.')[3]}.test`): Source => ({ ip, helo });
const message = (subject: string) => Buffer.from(`Subject: ${subject}\r\n\r\nbody of ${subject}\r\n.leading dot\r\n`);

async function kindOf(c: ProxyConnector, port: number, ip = '127.0.0.2'): Promise<string> {
  try {
    const s = await c.open({ host: 'mx.test', ip: '127.0.0.1', port }, source(ip), { mode: 'may', policy: 'may' });
    s.close();
    return 'connected';
  } catch (err) {
    return err instanceof ConnectError ? err.kind : `other: ${(err as Error).message}`;
  }
}

/** Lets release frames land, then QUITs the proxy's idle MX sessions so a sink can close at once. */
async function settle(server: ProxyServer): Promise<void> {
  await new Promise((r) => setTimeout(r, 50));
  server.pool.closeAll();
}

function rawServer(onConn: (s: Socket) => void): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer(onConn);
    servers.push(server);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
  });
}

test('every message arrives from the sending IP it asked for, through the proxy that holds it', async () => {
  const c = connector();
  const ips = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
  const before = mx.messages.length;
  for (const ip of ips) {
    const s = await c.open(target(), source(ip), { mode: 'may', policy: 'may' });
    expect(s.info).toMatchObject({ localIp: ip, mxIp: '127.0.0.1', via: ip <= '127.0.0.3' ? 'proxy:a' : 'proxy:b', helo: source(ip).helo });
    expect(s.info.greeting).toMatch(/mx\.test/);
    const tx = await s.send('sender@volley.test', [`rcpt-${ip}@dest.test`, `nobody@dest.test`], message(ip));
    expect(tx.recipients.map((r) => [r.rcpt, r.outcome, r.reply.code])).toEqual([
      [`rcpt-${ip}@dest.test`, 'delivered', 250],
      ['nobody@dest.test', 'failed', 550],
    ]);
    expect(tx.recipients[1].reply.enhanced).toBe('5.1.1');
    s.close();
  }
  await mx.waitFor(before + 4);
  const got = mx.messages.slice(before);
  expect(got.map((m) => [m.to[0], m.clientIp, m.helo])).toEqual(ips.map((ip) => [`rcpt-${ip}@dest.test`, ip, source(ip).helo]));
  expect(got[0].body).toContain('\r\n.leading dot\r\n');
  // One authenticated link per proxy carried all the sessions to it.
  expect(c.linksOpened).toBe(2);
});

test('ip-not-hosted when asking the wrong proxy; the next proxy in the list is tried', async () => {
  const wrong = connector({ proxies: { '127.0.0.4': [endpointA] } });
  const err = await wrong.open(target(), source('127.0.0.4'), { mode: 'may', policy: 'may' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ConnectError);
  expect(err).toMatchObject({ kind: 'ip-not-hosted', message: expect.stringContaining('not hosted by proxy proxy-a') });
  // Not configured at all on the MTA side: the same kind, no network.
  expect(await kindOf(wrong, mx.port, '127.0.0.9')).toBe('ip-not-hosted');

  const fallback = connector({ proxies: () => [endpointA, endpointB] });
  const s = await fallback.open(target(), source('127.0.0.4'), { mode: 'may', policy: 'may' });
  expect(s.info.via).toBe('proxy:b');
  s.close();
});

test('refused, never answers, closes before the greeting and a 554 greeting are told apart', async () => {
  const c = connector();
  const silent = await rawServer(() => undefined);
  const closer = await rawServer((s) => s.destroy());
  const grumpy = await rawServer((s) => s.end('554 5.7.1 go away\r\n'));
  expect(await kindOf(c, await getFreePort())).toBe('refused');
  expect(await kindOf(c, silent)).toBe('timeout');
  expect(await kindOf(c, closer)).toBe('closed-before-greeting');
  const err = await c.open({ host: 'mx.test', ip: '127.0.0.1', port: grumpy }, source('127.0.0.2'), { mode: 'may', policy: 'may' }).catch((e: unknown) => e);
  expect(err).toMatchObject({ kind: 'greeting-rejected', reply: { code: 554, enhanced: '5.7.1' } });
  // A proxy that cannot be reached is not an MX failure: kind 'error', stage 'connect'.
  const down = connector({ proxies: { '127.0.0.2': [{ ...endpointA, port: await getFreePort() }] } });
  expect(await down.open(target(), source('127.0.0.2'), { mode: 'may', policy: 'may' }).catch((e: unknown) => e)).toMatchObject({ kind: 'error', stage: 'connect' });
  // All of those failures left the link usable: still one link.
  expect(c.linksOpened).toBe(1);
});

test('reuse: two MTAs\' transactions to one MX travel over one MX connection', async () => {
  const reuseMx = new ScriptedMx();
  await reuseMx.listen();
  try {
    const mta1 = connector({ name: 'mta-1' });
    const mta2 = connector({ name: 'mta-2' });
    const t = { host: 'mx.test', ip: '127.0.0.1', port: reuseMx.port };
    const s1 = await mta1.open(t, source('127.0.0.3'), { mode: 'may', policy: 'may' });
    expect((s1 as unknown as { reused: boolean }).reused).toBe(false);
    await s1.send('a@volley.test', ['one@dest.test'], message('from mta-1'));
    s1.close();
    await waitUntil(() => a.server.stats().mxIdle > 0);
    const s2 = await mta2.open(t, source('127.0.0.3'), { mode: 'may', policy: 'may' });
    expect((s2 as unknown as { reused: boolean }).reused).toBe(true);
    expect(s2.info.localIp).toBe('127.0.0.3');
    await s2.send('b@volley.test', ['two@dest.test'], message('from mta-2'));
    s2.close();
    await reuseMx.waitFor(2);
    expect(reuseMx.connections).toBe(1);
    expect(reuseMx.messages.map((m) => [m.from, m.clientIp])).toEqual([
      ['a@volley.test', '127.0.0.3'],
      ['b@volley.test', '127.0.0.3'],
    ]);
    // A different HELO is a different key: a new MX connection.
    const s3 = await mta2.open(t, source('127.0.0.3', 'other.test'), { mode: 'may', policy: 'may' });
    s3.close();
    expect(reuseMx.connections).toBe(2);
  } finally {
    await settle(a.server);
    await reuseMx.close();
  }
});

test('max_transactions_per_session and idle_timeout retire pooled MX sessions', async () => {
  const sink = new ScriptedMx();
  await sink.listen();
  const p = await startProxy({ name: 'proxy-small', tls, secret, sendingIps: ['127.0.0.2'], maxTransactionsPerSession: 2, idleTimeoutMs: 300, logger: captureLogger().logger });
  try {
    const c = connector({ proxies: { '127.0.0.2': [{ host: '127.0.0.1', port: p.port, fingerprint: tls.fingerprint }] } });
    const t = { host: 'mx.test', ip: '127.0.0.1', port: sink.port };
    for (let i = 0; i < 3; i++) {
      const s = await c.open(t, source('127.0.0.2'), { mode: 'may', policy: 'may' });
      await s.send('a@volley.test', [`n${i}@dest.test`], message(`n${i}`));
      s.close();
      await new Promise((r) => setTimeout(r, 30));
    }
    // Two transactions on the first connection, the third on a second one.
    expect(sink.connections).toBe(2);
    await waitUntil(() => p.server.stats().mxIdle === 1);
    // Idle longer than idle_timeout: closed by the proxy, the next connect is fresh.
    await waitUntil(() => p.server.stats().mxIdle === 0 && sink.open === 0, 3_000);
    const s = await c.open(t, source('127.0.0.2'), { mode: 'may', policy: 'may' });
    expect((s as unknown as { reused: boolean }).reused).toBe(false);
    s.close();
    expect(sink.connections).toBe(3);
    expect(c.linksOpened).toBe(1);
  } finally {
    await p.server.stop();
    await sink.close();
  }
});

test('parallel sessions from one MTA use parallel links; a proxy restart is survived by reconnecting', async () => {
  const sink = new ScriptedMx({ holdMs: 100 });
  await sink.listen();
  const port = await getFreePort();
  const start = () => startProxy({ name: 'proxy-r', tls, secret, sendingIps: ['127.0.0.2'], listen: { address: '127.0.0.1', port }, logger: captureLogger().logger });
  let p = await start();
  try {
    const c = connector({ proxies: { '127.0.0.2': [{ host: '127.0.0.1', port, fingerprint: tls.fingerprint }] } });
    const t = { host: 'mx.test', ip: '127.0.0.1', port: sink.port };
    const sessions = await Promise.all([0, 1, 2].map(() => c.open(t, source('127.0.0.2'), { mode: 'may', policy: 'may' })));
    await Promise.all(sessions.map((s, i) => s.send('a@volley.test', [`p${i}@dest.test`], message(`p${i}`))));
    for (const s of sessions) s.close();
    expect(c.linksOpened).toBe(3);
    expect(sink.maxOpen).toBe(3);
    // Restart: the idle links are dead; the next open notices and dials again.
    await p.server.stop();
    p = await start();
    const s = await c.open(t, source('127.0.0.2'), { mode: 'may', policy: 'may' });
    await s.send('a@volley.test', ['after@dest.test'], message('after restart'));
    s.close();
    await sink.waitFor(4);
  } finally {
    await p.server.stop();
    await sink.close();
  }
});

test('a session lost mid-transaction rejects send (connection lost), and the link carries on', async () => {
  // An MX that accepts the envelope and hangs up at DATA.
  const port = await rawServer((s) => {
    s.write('220 flaky.test ESMTP\r\n');
    s.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\r\n').filter(Boolean)) {
        if (/^DATA/i.test(line)) s.destroy();
        else s.write('250 ok\r\n');
      }
    });
  });
  const c = connector();
  const s = await c.open({ host: 'flaky.test', ip: '127.0.0.1', port }, source('127.0.0.2'), { mode: 'may', policy: 'may' });
  await expect(s.send('a@volley.test', ['x@dest.test'], message('x'))).rejects.toThrow(/via proxy a/);
  expect(s.usable).toBe(false);
  s.close();
  const ok = await c.open(target(), source('127.0.0.2'), { mode: 'may', policy: 'may' });
  ok.close();
  expect(c.linksOpened).toBe(1);
});

test('a TLS requirement the proxy could not enforce is refused as a clear protocol error; the old policy names still work', async () => {
  const c = connector();
  const bad = [
    [{ mode: 'verify', policy: 'mta-sts' }, 'tls.mode verify needs tls.names'],
    [{ mode: 'dane', policy: 'dane', names: ['mx.test'], tlsa: [] }, 'tls.mode dane needs tls.tlsa'],
    [{ mode: 'dane', policy: 'dane', tlsa: [{ usage: 3, selector: 1, matchingType: 1, data: 'zz' }] }, 'tls.tlsa data is not hex'],
    [{ mode: 'strict', policy: 'may' }, 'tls.mode is not one of none, may, encrypt, verify, dane'],
    ['sometimes', 'tls is not a TLS requirement object'],
  ] as const;
  for (const [tls, why] of bad) {
    const err = await c.open(target(), source('127.0.0.2'), tls as unknown as TlsRequirement).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'error', message: `via proxy a: bad connect request: ${why}` });
  }
  // An MTA from before the ladder: "required" is encrypt, refused for an MX without STARTTLS, with the outcome.
  const old = await c.open(target(), source('127.0.0.2'), 'required' as unknown as TlsRequirement).catch((e: unknown) => e);
  expect(old).toMatchObject({ kind: 'tls-required', tls: { policy: 'encrypt', verified: false, failure: 'starttls-not-supported' } });
  const s = await c.open(target(), source('127.0.0.2'), 'opportunistic' as unknown as TlsRequirement);
  expect(s.info.tls).toEqual({ policy: 'may', verified: false });
  s.close();
  await settle(a.server);
});

test('pooled MX sessions are shared only between identical TLS requirements', async () => {
  const poolMx = new ScriptedMx();
  await poolMx.listen();
  try {
    const c = connector();
    const t = { host: 'mx.test', ip: '127.0.0.1', port: poolMx.port };
    // Each session goes back to the pool before the next open: `idle` is how many the pool then holds.
    const open = async (tls: TlsRequirement, idle: number): Promise<boolean> => {
      const s = await c.open(t, source('127.0.0.3'), tls);
      const reused = (s as unknown as { reused: boolean }).reused;
      s.close();
      await waitUntil(() => a.server.stats().mxIdle === idle);
      return reused;
    };
    expect(await open({ mode: 'may', policy: 'may' }, 1)).toBe(false);
    expect(await open({ mode: 'may', policy: 'may' }, 1)).toBe(true);
    // The same mode from another rule, MTA-STS testing, or other names: each its own session.
    expect(await open({ mode: 'may', policy: 'mta-sts', testing: true, names: ['mx.test'] }, 2)).toBe(false);
    expect(await open({ mode: 'may', policy: 'mta-sts', testing: true, names: ['other.test'] }, 3)).toBe(false);
    expect(await open({ mode: 'none', policy: 'none' }, 4)).toBe(false);
    expect(await open({ mode: 'may', policy: 'mta-sts', testing: true, names: ['MX.test'] }, 4)).toBe(true);
    expect(poolMx.connections).toBe(4);
  } finally {
    await settle(a.server);
    await poolMx.close();
  }
});

test('through the proxy, STARTTLS refused under encrypt fails with the TLS outcome, and a failed opportunistic handshake is retried in clear', async () => {
  const refusing = await startTlsMx({ starttls: [454, '4.7.0 TLS not available'] });
  const broken = await startTlsMx({ starttls: 'garbage' });
  try {
    const c = connector();
    const err = await c.open({ host: 'mx.test', ip: '127.0.0.1', port: refusing.port }, source('127.0.0.2'), { mode: 'encrypt', policy: 'encrypt' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'tls-required', tls: { policy: 'encrypt', verified: false, failure: 'starttls-not-supported' } });
    expect(refusing.messages).toHaveLength(0);
    const s = await c.open({ host: 'mx.test', ip: '127.0.0.1', port: broken.port }, source('127.0.0.2'), { mode: 'may', policy: 'may' });
    expect(s.info.tls).toEqual({ policy: 'may', verified: false, failure: 'validation-failure' });
    await s.send('a@volley.test', ['x@dest.test'], message('in clear'));
    s.close();
    expect(broken.messages).toEqual([expect.objectContaining({ tls: false })]);
    expect(broken.connections).toHaveLength(2);
  } finally {
    await settle(a.server);
    await refusing.close();
    await broken.close();
  }
});

test('a verify session through the proxy checks the MX certificate against the proxy\'s mx_tls_ca_file trust (mxTrust), and fails as not trusted without it', async () => {
  const ca = createTestCa(dir, 'MX CA');
  const tlsMx = new ScriptedMx({ tls: ca.issue(['mx.trust.test']) });
  await tlsMx.listen();
  const c = await startProxy({ name: 'proxy-c', tls, secret, sendingIps: ['127.0.0.6'], logger: captureLogger().logger, mxTrust: { file: ca.caFile, context: mxTrust(ca.caFile, 'mx_tls_ca_file') } });
  try {
    const endpointC = { host: '127.0.0.1', port: c.port, fingerprint: tls.fingerprint, name: 'c' };
    const t = { host: 'mx.trust.test', ip: '127.0.0.1', port: tlsMx.port };
    const verify: TlsRequirement = { mode: 'verify', policy: 'verify', names: ['mx.trust.test'] };
    const untrusting = await connector().open(t, source('127.0.0.2'), verify).catch((e: unknown) => e);
    expect(untrusting).toMatchObject({ kind: 'tls-required', tls: { policy: 'verify', verified: false, failure: 'certificate-not-trusted' } });
    const s = await connector({ proxies: { '127.0.0.6': [endpointC] } }).open(t, source('127.0.0.6'), verify);
    expect(s.info.tls).toMatchObject({ policy: 'verify', verified: true });
    s.close();
  } finally {
    await settle(a.server);
    await c.server.stop();
    await tlsMx.close();
  }
});
