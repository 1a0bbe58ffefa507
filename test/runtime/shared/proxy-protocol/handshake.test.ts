import { randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { ProxyConnector, ProxyConnectError } from '../../../../runtime/mta/delivery/connect/proxy-connector';
import type { ProxyServer } from '../../../../runtime/proxy/server';
import { FrameChannel } from '../../../../runtime/shared/proxy-protocol/channel';
import { encodeFrame, FrameDecoder } from '../../../../runtime/shared/proxy-protocol/codec';
import { dialProxy, ProxyLinkError, type ProxyEndpoint } from '../../../../runtime/shared/proxy-protocol/client';
import { checkSecret, clientHandshake, loadSecret } from '../../../../runtime/shared/proxy-protocol/handshake';
import { captureLogger, newSecret, proxyTls, startProxy, waitUntil, type ProxyTls } from '../../../helpers/proxy-fixtures';
import { tempDir } from '../../../helpers/tmp';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = tempDir('volley-proxy-auth-');
const otherDir = tempDir('volley-proxy-other-');
const secret = newSecret();
let tls: ProxyTls;
let proxy: ProxyServer;
let endpoint: ProxyEndpoint;
const proxyLog = captureLogger();

beforeAll(async () => {
  tls = await proxyTls(dir);
  const started = await startProxy({ name: 'proxy-auth', tls, secret, sendingIps: ['127.0.0.2'], handshakeTimeoutMs: 1_000, logger: proxyLog.logger });
  proxy = started.server;
  endpoint = { host: '127.0.0.1', port: started.port, fingerprint: tls.fingerprint };
});
afterAll(() => proxy.stop());

const dial = (s: Buffer, e: ProxyEndpoint = endpoint) => dialProxy(e, { secret: s, connectTimeoutMs: 2_000, handshakeTimeoutMs: 2_000, name: 'mta-test' });

/** A TLS connection to the proxy that pins nothing, for sending raw bytes. */
function rawTls(): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: endpoint.port, rejectUnauthorized: false }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Everything the peer sends until it closes (or `ms` passes). */
function drain(socket: NodeJS.ReadableStream & { destroy(): void }, ms = 3_000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ data: Buffer.concat(chunks), closed: false });
    }, ms);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closed: true });
    });
  });
}

const proxyLines = (reason: string) => proxyLog.lines().filter((l) => l.reason === reason && String(l.msg).includes('authentication failed'));

test('the secret must be at least 32 bytes, from a file or the environment', () => {
  expect(() => checkSecret(Buffer.from('short'))).toThrow(/at least 32/);
  const file = join(dir, 'secret');
  writeFileSync(file, `${'s'.repeat(40)}\n`);
  expect(loadSecret({ file }).length).toBe(40);
  process.env.VOLLEY_TEST_PROXY_SECRET = 'e'.repeat(32);
  expect(loadSecret({ env: 'VOLLEY_TEST_PROXY_SECRET' }).toString()).toBe('e'.repeat(32));
  expect(() => loadSecret({ file: join(dir, 'missing') })).toThrow(/cannot read/);
});

test('handshake: both sides prove the secret, the MTA learns the proxy\'s name and IPs', async () => {
  const { channel, welcome } = await dial(secret);
  // keepalive: this proxy answers pings at once and beacons (heartbeat.ts); pipelining: it takes a session's next transaction before answering the last (codec.ts).
  expect(welcome).toEqual({ name: 'proxy-auth', sendingIps: ['127.0.0.2'], keepalive: true, pipelining: true });
  // The link's keep-alive takes pongs off the stream; here the answer itself is looked at.
  channel.swallowPongs = false;
  channel.send({ t: 'ping' });
  expect((await channel.next(2_000)).header.t).toBe('pong');
  channel.close();
  expect(proxyLog.lines().some((l) => l.msg === 'proxy: MTA authenticated' && l.mta === 'mta-test')).toBe(true);
  // The secret never reaches a log line.
  expect(proxyLog.text()).not.toContain(secret.toString());
});

test('a wrong secret is refused, with a clear log line on both ends', async () => {
  const before = proxyLines('bad-proof').length;
  await expect(dial(newSecret())).rejects.toMatchObject({ stage: 'auth', message: expect.stringMatching(/authentication failed.*wrong secret/) });
  await waitUntil(() => proxyLines('bad-proof').length === before + 1);
  // Through the connector: a ConnectError (kind 'error') naming the proxy stage, and an error log line.
  const mtaLog = captureLogger();
  const connector = new ProxyConnector({ proxies: { '127.0.0.2': [endpoint] }, secret: newSecret(), logger: mtaLog.logger });
  const err = await connector.open({ host: 'mx.test', ip: '127.0.0.1', port: 25 }, { ip: '127.0.0.2', helo: 'mta.test' }, { mode: 'may', policy: 'may' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ProxyConnectError);
  expect(err).toMatchObject({ kind: 'error', stage: 'auth' });
  expect(mtaLog.lines().some((l) => l.level === 50 && String(l.msg).includes('authentication failed'))).toBe(true);
});

test('an MTA refuses a proxy that cannot prove the secret', async () => {
  // An impostor that plays along but does not know the secret.
  const impostor = createTlsServer({ key: tls.key, cert: tls.cert }, (s) => {
    const d = new FrameDecoder();
    s.on('data', (chunk: Buffer) => {
      for (const f of d.push(chunk)) {
        if (f.header.t === 'hello') s.write(encodeFrame({ t: 'challenge', version: 1, nonce: randomBytes(32).toString('base64') }));
        if (f.header.t === 'auth') s.write(encodeFrame({ t: 'welcome', proof: randomBytes(32).toString('base64'), name: 'evil', sending_ips: ['127.0.0.2'] }));
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (impostor.address() as { port: number }).port;
    await expect(dial(secret, { host: '127.0.0.1', port, fingerprint: tls.fingerprint })).rejects.toThrow(/proxy's proof does not match/);
  } finally {
    impostor.close();
  }
});

test('a previous secret is tried once, only after the proxy refused the current one: not when the proxy\'s own proof fails, never below 32 bytes', async () => {
  // An impostor that takes any proof: the MTA must not hand it a second one made with the previous secret.
  let auths = 0;
  const impostor = createTlsServer({ key: tls.key, cert: tls.cert }, (s) => {
    const d = new FrameDecoder();
    s.on('data', (chunk: Buffer) => {
      for (const f of d.push(chunk)) {
        if (f.header.t === 'hello') s.write(encodeFrame({ t: 'challenge', version: 1, nonce: randomBytes(32).toString('base64') }));
        if (f.header.t === 'auth') {
          auths++;
          s.write(encodeFrame({ t: 'welcome', proof: randomBytes(32).toString('base64'), name: 'evil', sending_ips: [] }));
        }
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (impostor.address() as { port: number }).port;
    const options = { secret: newSecret(), previousSecret: secret, connectTimeoutMs: 2_000, handshakeTimeoutMs: 2_000 };
    await expect(dialProxy({ host: '127.0.0.1', port, fingerprint: tls.fingerprint }, options)).rejects.toThrow(/proxy's proof does not match/);
    expect(auths).toBe(1);
  } finally {
    impostor.close();
  }
  // The real proxy refuses both wrong secrets: two attempts, no more.
  const before = proxyLines('bad-proof').length;
  await expect(dialProxy(endpoint, { secret: newSecret(), previousSecret: newSecret(), connectTimeoutMs: 2_000, handshakeTimeoutMs: 2_000 })).rejects.toMatchObject({ stage: 'auth', refusedOurProof: true });
  await waitUntil(() => proxyLines('bad-proof').length === before + 2);
  // A short previous secret is a setup error, said before any connection.
  await expect(dialProxy(endpoint, { secret, previousSecret: Buffer.from('short'), connectTimeoutMs: 2_000, handshakeTimeoutMs: 2_000 })).rejects.toMatchObject({ code: 'ESECRET' });
});

test('a certificate that is not the pinned one is refused before any frame', async () => {
  const other = await proxyTls(otherDir);
  await expect(dial(secret, { ...endpoint, fingerprint: other.fingerprint })).rejects.toMatchObject({ stage: 'tls', message: expect.stringMatching(/not the pinned one/) });
  await expect(dial(secret, { host: '127.0.0.1', port: endpoint.port })).rejects.toBeInstanceOf(ProxyLinkError);
});

test('plain TCP is refused: no frame comes back, the connection closes, the proxy logs it', async () => {
  const plainLines = () => proxyLog.lines().filter((l) => String(l.msg).includes('TLS handshake failed') && l.code === 'ERR_SSL_WRONG_VERSION_NUMBER').length;
  const before = plainLines();
  const s = netConnect({ host: '127.0.0.1', port: endpoint.port });
  s.on('connect', () => s.write(encodeFrame({ t: 'hello', version: 1, nonce: randomBytes(32).toString('base64'), channel: 'delivery' })));
  const { data, closed } = await drain(s);
  expect(closed).toBe(true);
  expect(data.toString('latin1')).not.toContain('challenge');
  await waitUntil(() => plainLines() === before + 1);
});

test('random bytes, over plain TCP and over TLS, are refused', async () => {
  const plain = netConnect({ host: '127.0.0.1', port: endpoint.port });
  plain.on('connect', () => plain.write(randomBytes(512)));
  expect((await drain(plain)).closed).toBe(true);

  const before = proxyLines('protocol').length;
  const s = await rawTls();
  s.write(Buffer.concat([Buffer.from([0x7f, 0, 0, 0]), randomBytes(256)]));
  const { data, closed } = await drain(s);
  expect(closed).toBe(true);
  expect(data.length).toBe(0);
  await waitUntil(() => proxyLines('protocol').length === before + 1);
});

test('a replayed handshake is refused: proofs are bound to the TLS session', async () => {
  // Record everything a genuine MTA writes during one handshake...
  const first = await rawTls();
  const recorded: Buffer[] = [];
  const write = first.write.bind(first);
  first.write = ((chunk: Buffer, ...rest: never[]) => {
    recorded.push(Buffer.from(chunk));
    return write(chunk, ...rest);
  }) as typeof first.write;
  const channel = new FrameChannel(first);
  await clientHandshake(channel, secret, { timeoutMs: 2_000 });
  channel.close();
  expect(recorded).toHaveLength(2); // hello, auth

  // ...and play it back on a new connection, as an attacker on the wire would.
  const before = proxyLines('bad-proof').length;
  const second = await rawTls();
  const got = drain(second);
  second.write(recorded[0]);
  await new Promise((r) => setTimeout(r, 100));
  second.write(recorded[1]);
  const { data, closed } = await got;
  expect(closed).toBe(true);
  const frames = new FrameDecoder().push(data).map((f) => f.header.t);
  expect(frames).toEqual(['challenge']); // and never a welcome
  await waitUntil(() => proxyLines('bad-proof').length === before + 1);
});

test('a client that stalls in the handshake is dropped after the timeout', async () => {
  const before = proxyLines('timeout').length;
  const s = await rawTls();
  const { closed } = await drain(s, 4_000);
  expect(closed).toBe(true);
  await waitUntil(() => proxyLines('timeout').length === before + 1);
});

test('an unknown protocol version gets an error frame, then the close', async () => {
  const s = await rawTls();
  const got = drain(s);
  s.write(encodeFrame({ t: 'hello', version: 99, nonce: randomBytes(32).toString('base64') }));
  const { data } = await got;
  const frames = new FrameDecoder().push(data);
  expect(frames[0].header).toMatchObject({ t: 'error', code: 'version', versions: [1] });
});

test('after all that, the proxy still serves a correct client', async () => {
  const { channel, welcome } = await dial(secret);
  expect(welcome.name).toBe('proxy-auth');
  channel.close();
  expect(proxy.stats().refused).toBeGreaterThanOrEqual(7);
});

test('allow_from: a source outside the list is closed at once, with a log line', async () => {
  const log = captureLogger();
  const { server, port } = await startProxy({ name: 'strict', tls, secret, sendingIps: ['127.0.0.2'], allowFrom: ['10.0.0.0/8'], logger: log.logger });
  try {
    await expect(dial(secret, { ...endpoint, port })).rejects.toBeInstanceOf(ProxyLinkError);
    await waitUntil(() => log.text().includes('not in allow_from'));
    const open = await startProxy({ name: 'lax', tls, secret, sendingIps: ['127.0.0.2'], allowFrom: ['127.0.0.0/8'], logger: log.logger });
    const ok = await dial(secret, { ...endpoint, port: open.port });
    ok.channel.close();
    await open.server.stop();
  } finally {
    await server.stop();
  }
});
