// The MTA's end of the proxy link takes a transaction's answer only when it
// answers that transaction: one result per recipient it sent, in order. A
// result that names other recipients (another transaction's answer, a proxy
// out of step) or leaves some out must never reach the attempt log as this
// message's outcome: the recipients it leaves out would be marked done, never
// delivered. It is a broken link: deferred, retried soon, nothing lost.
import { createServer as createTlsServer, type Server, type TLSSocket } from 'node:tls';
import { PROXY_LINK_CODE, ProxyConnector } from '../../../../../runtime/mta/delivery/connect/proxy-connector';
import { FrameChannel, serverHandshake } from '../../../../../runtime/shared/proxy-protocol/index';
import type { Source, TlsRequirement } from '../../../../../runtime/shared/smtp/connector';
import { captureLogger, newSecret, proxyTls, type ProxyTls } from '../../../../helpers/proxy-fixtures';
import { tempDir } from '../../../../helpers/tmp';

const dir = tempDir('volley-proxy-answers-');
const secret = newSecret();
const source: Source = { ip: '127.0.0.2', helo: 'vmta-2.test' };
const may: TlsRequirement = { mode: 'may', policy: 'may' };
const delivered = (rcpt: string) => ({ rcpt, reply: { code: 250, text: 'ok' }, outcome: 'delivered' });
let tls: ProxyTls;
const closers: (() => unknown)[] = [];

beforeAll(async () => {
  tls = await proxyTls(dir);
});

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** An authenticated proxy that answers every transaction with `recipients(to)` as the result's recipients. */
async function answeringProxy(recipients: (to: string[]) => unknown): Promise<number> {
  const sockets = new Set<TLSSocket>();
  const server: Server = createTlsServer({ key: tls.key, cert: tls.cert, minVersion: 'TLSv1.2' }, (socket: TLSSocket) => {
    sockets.add(socket);
    const channel = new FrameChannel(socket);
    void (async () => {
      await serverHandshake(channel, secret, { timeoutMs: 5_000, name: 'liar', sendingIps: ['127.0.0.2'], keepalive: true });
      for (;;) {
        const f = await channel.next();
        if (f.header.t === 'ping') channel.send({ t: 'pong' });
        else if (f.header.t === 'connect') {
          channel.send({ t: 'connected', reused: false, session: { mx_host: 'mx.test', mx_ip: '127.0.0.1', port: 25, helo: 'vmta-2.test', capabilities: ['8BITMIME'], connect_ms: 1, transactions: 0 } });
        } else if (f.header.t === 'transaction') {
          channel.send({ t: 'result', recipients: recipients(f.header.to as string[]), envelope_ms: 1, data_ms: 1, usable: true });
        }
      }
    })().catch(() => socket.destroy());
  });
  const port = await new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as { port: number }).port)));
  closers.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(r));
  });
  return port;
}

async function sendThrough(port: number, to: string[]): Promise<unknown> {
  const c = new ProxyConnector({ proxies: { '127.0.0.2': [{ host: '127.0.0.1', port, fingerprint: tls.fingerprint, name: 'p' }] }, secret, logger: captureLogger().logger });
  closers.push(() => c.close());
  const s = await c.open({ host: 'mx.test', ip: '127.0.0.1', port: 25 }, source, may);
  try {
    return await s.send('s@volley.test', to, Buffer.from('Subject: x\r\n\r\nbody\r\n'));
  } catch (err) {
    return err;
  } finally {
    s.close();
  }
}

test('a result for the recipients it was sent is taken', async () => {
  const port = await answeringProxy((to) => to.map(delivered));
  expect(await sendThrough(port, ['one@dest.test', 'two@dest.test'])).toMatchObject({ recipients: [delivered('one@dest.test'), delivered('two@dest.test')] });
});

test.each([
  ['no recipients at all', () => []],
  ['one recipient left out', (to: string[]) => to.slice(0, 1).map(delivered)],
  ["another transaction's recipient", () => [delivered('someone-else@other.test'), delivered('two@dest.test')]],
  ['recipients that are not a list', () => 'all of them'],
  ['no reply code', (to: string[]) => to.map((rcpt) => ({ rcpt, outcome: 'delivered' }))],
  ['an outcome that is no outcome', (to: string[]) => to.map((rcpt) => ({ rcpt, reply: { code: 250, text: 'ok' }, outcome: 'sent, probably' }))],
  ['"delivered" on a 550', (to: string[]) => to.map((rcpt) => ({ rcpt, reply: { code: 550, text: 'no such user' }, outcome: 'delivered' }))],
])('a result with %s is a broken link (deferred, retried soon), never an outcome', async (_what, recipients) => {
  const port = await answeringProxy(recipients);
  const r = await sendThrough(port, ['one@dest.test', 'two@dest.test']);
  expect(r).toBeInstanceOf(Error);
  expect((r as { code?: string }).code).toBe(PROXY_LINK_CODE);
});
