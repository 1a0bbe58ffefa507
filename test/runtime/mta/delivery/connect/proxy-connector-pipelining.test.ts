// The connector's side of pipelining over the proxy link (codec.ts,
// PIPELINING): a session pipelines only when the proxy announced it in its
// welcome and the MX offers PIPELINING; behind a proxy of an earlier release
// it sends one transaction at a time. A transaction pipelined behind one that
// lost the MX session is answered, in order, without reaching the MX, and the
// link carries on.
import { createServer as createTlsServer, type Server, type TLSSocket } from 'node:tls';
import { ProxyConnector } from '../../../../../runtime/mta/delivery/connect/proxy-connector';
import type { ProxyServer } from '../../../../../runtime/proxy/server';
import { FrameChannel, serverHandshake, type Frame } from '../../../../../runtime/shared/proxy-protocol/index';
import type { OutboundSession, Source, TlsRequirement } from '../../../../../runtime/shared/smtp/connector';
import { pipeliningMx, type PipeliningMx } from '../../../../helpers/pipelining-mx';
import { captureLogger, newSecret, proxyTls, startProxy, waitUntil, type ProxyTls } from '../../../../helpers/proxy-fixtures';
import { tempDir } from '../../../../helpers/tmp';

const dir = tempDir('volley-proxy-pipelining-');
const secret = newSecret();
const source: Source = { ip: '127.0.0.2', helo: 'vmta-2.test' };
const may: TlsRequirement = { mode: 'may', policy: 'may' };
const body = (subject: string): Buffer => Buffer.from(`Subject: ${subject}\r\n\r\nbody\r\n`);
let tls: ProxyTls;
const closers: (() => unknown)[] = [];

beforeAll(async () => {
  tls = await proxyTls(dir);
});

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

function connectorTo(port: number): ProxyConnector {
  const c = new ProxyConnector({ proxies: { '127.0.0.2': [{ host: '127.0.0.1', port, fingerprint: tls.fingerprint, name: 'p' }] }, secret, logger: captureLogger().logger });
  closers.push(() => c.close());
  return c;
}

async function newProxy(): Promise<{ server: ProxyServer; port: number }> {
  const p = await startProxy({ name: 'p', tls, secret, sendingIps: ['127.0.0.2'], logger: captureLogger().logger });
  closers.push(() => p.server.stop());
  return p;
}

async function mxOf(mx: PipeliningMx): Promise<{ host: string; ip: string; port: number }> {
  closers.push(() => mx.server.close());
  return { host: 'mx.test', ip: '127.0.0.1', port: mx.port };
}

/**
 * A proxy of the release before pipelining: the same handshake with no
 * `pipelining` in its welcome, then one frame at a time, each transaction
 * answered only when the test says. It records whether a transaction frame
 * came while another was unanswered.
 */
async function earlierProxy(): Promise<{ port: number; overlapped: () => boolean; answer: () => void; transactions: () => number }> {
  let overlapped = false;
  let transactions = 0;
  const pending: (() => void)[] = [];
  const sockets = new Set<TLSSocket>();
  const server: Server = createTlsServer({ key: tls.key, cert: tls.cert, minVersion: 'TLSv1.2' }, (socket: TLSSocket) => {
    sockets.add(socket);
    const channel = new FrameChannel(socket);
    void (async () => {
      await serverHandshake(channel, secret, { timeoutMs: 5_000, name: 'old', sendingIps: ['127.0.0.2'], keepalive: true });
      channel.onUnsolicited = (f: Frame) => {
        if (f.header.t === 'transaction' && pending.length > 0) overlapped = true;
        return false;
      };
      for (;;) {
        const f = await channel.next();
        if (f.header.t === 'ping') channel.send({ t: 'pong' });
        else if (f.header.t === 'connect') {
          channel.send({ t: 'connected', reused: false, session: { mx_host: 'mx.test', mx_ip: '127.0.0.1', port: 25, helo: 'vmta-2.test', capabilities: ['PIPELINING', '8BITMIME'], connect_ms: 1, transactions: 0 } });
        } else if (f.header.t === 'transaction') {
          transactions++;
          const to = f.header.to as string[];
          await new Promise<void>((r) => pending.push(r));
          channel.send({ t: 'result', recipients: to.map((rcpt) => ({ rcpt, reply: { code: 250, text: 'ok' }, outcome: 'delivered' })), envelope_ms: 1, data_ms: 1, usable: true });
        }
      }
    })().catch(() => socket.destroy());
  });
  const port = await new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as { port: number }).port)));
  closers.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(r));
  });
  return { port, overlapped: () => overlapped, answer: () => pending.shift()?.(), transactions: () => transactions };
}

test('through a proxy that announced pipelining and an MX that offers it, the session pipelines: the engine hears onBodySent at once', async () => {
  const mx = await pipeliningMx([]);
  const p = await newProxy();
  const s = await connectorTo(p.port).open(await mxOf(mx), source, may);
  expect(s.pipelined).toBe(true);
  let bodySent = false;
  const first = s.send('s@volley.test', ['one@dest.test'], body('one'), { onBodySent: () => (bodySent = true) });
  expect(bodySent).toBe(true);
  const second = s.send('s@volley.test', ['two@dest.test'], body('two'));
  expect((await first).recipients[0].outcome).toBe('delivered');
  expect((await second).recipients[0].outcome).toBe('delivered');
  s.close();
  expect(mx.bodies.map((b) => b.split('\n')[0])).toEqual(['Subject: one', 'Subject: two']);
});

test('not where the MX does not offer PIPELINING', async () => {
  const mx = await pipeliningMx([], { pipelining: false });
  const p = await newProxy();
  const s = await connectorTo(p.port).open(await mxOf(mx), source, may);
  expect(s.pipelined).toBe(false);
  s.close();
});

test('behind a proxy of an earlier release (no pipelining in its welcome), one transaction at a time', async () => {
  const old = await earlierProxy();
  const s: OutboundSession = await connectorTo(old.port).open({ host: 'mx.test', ip: '127.0.0.1', port: 25 }, source, may);
  expect(s.pipelined).toBe(false);
  let bodySent = false;
  const first = s.send('s@volley.test', ['one@dest.test'], body('one'), { onBodySent: () => (bodySent = true) });
  // A second send before the answer is refused here, never put on the link.
  await expect(s.send('s@volley.test', ['two@dest.test'], body('two'))).rejects.toThrow(/one transaction at a time/);
  await waitUntil(() => old.transactions() === 1);
  old.answer();
  expect((await first).recipients[0].outcome).toBe('delivered');
  expect(bodySent).toBe(false);
  expect(old.overlapped()).toBe(false);
  s.close();
});

test('a transaction pipelined behind one whose MX hung up is answered transaction_failed, never reaches the MX, and the link carries the next session', async () => {
  // The first body gets 421 and the MX closes: the envelope pipelined behind it has no session left.
  const mx = await pipeliningMx(['close']);
  const p = await newProxy();
  const c = connectorTo(p.port);
  const target = await mxOf(mx);
  const s = await c.open(target, source, may);
  expect(s.pipelined).toBe(true);
  const first = s.send('s@volley.test', ['one@dest.test'], body('one'), { onBodySent: () => undefined });
  const second = s.send('s@volley.test', ['two@dest.test'], body('two')).catch((e: Error) => e);
  const r1 = await first;
  expect([r1.recipients[0].outcome, r1.recipients[0].reply.code]).toEqual(['deferred', 421]);
  const r2 = await second;
  expect(r2).toBeInstanceOf(Error);
  expect((r2 as Error).message).toMatch(/^via proxy p: /);
  expect(s.usable).toBe(false);
  s.close();
  expect(mx.bodies).toHaveLength(1);
  // The link itself is fine: pooled, and the next session goes over it.
  expect(c.idleLinks()).toBe(1);
  const again = await c.open(target, source, may);
  expect((await again.send('s@volley.test', ['two@dest.test'], body('two'))).recipients[0].outcome).toBe('delivered');
  again.close();
  expect(c.linksOpened).toBe(1);
});
