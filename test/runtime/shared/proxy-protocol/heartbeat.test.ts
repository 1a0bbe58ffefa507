// The link liveness check (runtime/shared/proxy-protocol/heartbeat.ts): a
// peer that accepts and then says nothing is taken for dead after exactly
// `misses` silent intervals, and what waited on the link fails at once; a
// peer that beacons is alive though our pings wait behind an upload. Fake
// timers count the intervals; the sockets are real, on loopback.
import { connect as tlsConnect, createServer, type TLSSocket, type Server } from 'node:tls';
import { FrameChannel } from '../../../../runtime/shared/proxy-protocol/channel';
import { keepAlive } from '../../../../runtime/shared/proxy-protocol/heartbeat';
import { proxyTls } from '../../../helpers/proxy-fixtures';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir('volley-heartbeat-');
let server: Server | undefined;
const peers: TLSSocket[] = [];
let channel: FrameChannel | undefined;

afterEach(async () => {
  jest.useRealTimers();
  channel?.close();
  for (const p of peers.splice(0)) p.destroy();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** Event-loop turns only (no clock, timers are fake): true once `check` holds. */
async function settles(check: () => boolean): Promise<boolean> {
  for (let turn = 0; turn < 2_000; turn++) {
    if (check()) return true;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return check();
}

/** A TLS peer that accepts and never writes a byte; `received` counts what it got. */
async function silentPeer(): Promise<{ channel: FrameChannel; received: () => number; peer: () => TLSSocket }> {
  const tls = await proxyTls(dir);
  let received = 0;
  server = createServer({ key: tls.key, cert: tls.cert }, (s) => {
    peers.push(s);
    s.on('data', (chunk: Buffer) => (received += chunk.length));
    s.on('error', () => undefined);
  });
  const port = await new Promise<number>((r) => server!.listen(0, '127.0.0.1', () => r((server!.address() as { port: number }).port)));
  const socket = await new Promise<TLSSocket>((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => resolve(s));
    s.once('error', reject);
  });
  expect(await settles(() => peers.length === 1)).toBe(true);
  return { channel: new FrameChannel(socket), received: () => received, peer: () => peers[0] };
}

test('a peer that goes silent is taken for dead after 2 silent intervals of pings, and a wait on the link fails at once', async () => {
  const silent = await silentPeer();
  channel = silent.channel;
  jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
  keepAlive(channel, { intervalMs: 1_000 });
  // Something waits for an answer with no timeout of its own (as a connect waits minutes).
  const waiting = channel.next().then(
    () => 'answered',
    (err: { code?: string }) => err.code,
  );
  await jest.advanceTimersByTimeAsync(1_000);
  expect(channel.open).toBe(true);
  // Its first ping reached the peer (the peer is there, it just never answers).
  expect(await settles(() => silent.received() > 0)).toBe(true);
  await jest.advanceTimersByTimeAsync(999);
  expect(channel.open).toBe(true);
  await jest.advanceTimersByTimeAsync(1);
  expect(channel.open).toBe(false);
  expect((channel.closedReason as { code?: string }).code).toBe('ELINKDEAD');
  expect(await waiting).toBe('ELINKDEAD');
});

test('a peer that beacons is alive even while it reads none of our pings (as while a big upload is ahead of them)', async () => {
  const silent = await silentPeer();
  channel = silent.channel;
  const peer = new FrameChannel(silent.peer());
  jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
  // The proxy's side: an unasked pong each interval, and no reading of ours (as while it takes a long body).
  keepAlive(peer, { intervalMs: 1_000, ping: false, beacon: true, enforce: false });
  silent.peer().pause();
  keepAlive(channel, { intervalMs: 1_000 });
  const heard = (): number => channel!.bytesIn;
  for (let interval = 0; interval < 6; interval++) {
    const before = heard();
    await jest.advanceTimersByTimeAsync(1_000);
    expect(await settles(() => heard() > before)).toBe(true);
    expect(channel.open).toBe(true);
  }
});
