// Pipelining over the proxy link, with real processes: an MTA (`volley mta`)
// delivers a backlog over one connection through a `volley proxy` to an MX
// that holds each final reply. The MX counts envelopes that arrived while
// an earlier body's final reply was still unwritten: each is a round trip
// saved, so a backlog of N costs about N round trips, not 2N. Replies stay
// matched to their transactions when a RCPT is refused, all of a message's
// recipients are, or a body gets a 4xx, in the middle of a pipelined run.
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_AUTH, deliveryConfigYaml } from '../../helpers/config';
import { VOLLEY, startMta, type MtaProcess } from '../../helpers/mta-process';
import { pipeliningMx, type PipeliningMx } from '../../helpers/pipelining-mx';
import { getFreePort } from '../../helpers/postfix-tools';
import { captureLogger, newSecret, proxyTls, startProxy, waitUntil } from '../../helpers/proxy-fixtures';
import { ProxyConnector } from '../../../runtime/mta/delivery/connect/proxy-connector';
import { FrameChannel, clientHandshake } from '../../../runtime/shared/proxy-protocol';
import { inject, message } from '../../helpers/smtp-dialog';
import { readAttempts } from '../../helpers/attempt-log';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir('volley-proxy-pipe-');
let proxy: ChildProcess | undefined;
let mta: MtaProcess;
let backlogMx: PipeliningMx;
let mixedMx: PipeliningMx;

type Attempt = { message_id: string; recipient: string; status: string; smtp_code: number; smtp_text: string; via?: string };
const attempts = (): Attempt[] => readAttempts<Attempt>(join(mta.persistentPath, 'log', 'events'));

beforeAll(async () => {
  // Each final reply held 40 ms: whatever the proxy pipelines behind a body reaches the MX before that body's reply leaves.
  backlogMx = await pipeliningMx([], { holdFinalMs: 40 });
  mixedMx = await pipeliningMx([], {
    holdFinalMs: 40,
    rcpt: (a) => (a.startsWith('nobody') ? '550 5.1.1 no such user' : undefined),
    final: (body) => (body.includes('Subject: later') ? '451 4.3.0 try again later' : undefined),
  });
  const tls = await proxyTls(dir);
  const secret = join(dir, 'secret');
  writeFileSync(secret, newSecret(), { mode: 0o600 });
  const port = await getFreePort();
  const config = join(dir, 'proxy.yaml');
  writeFileSync(config, `name: pipe-proxy\nlisten: 127.0.0.1:${port}\nadmin_listen: 127.0.0.1:${await getFreePort()}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\nsecret_file: ${secret}\nsending_ips: [127.0.0.2]\n`);
  proxy = spawn(process.execPath, [VOLLEY, 'proxy', '--config', config], { stdio: 'ignore', detached: true });
  const up = (): Promise<boolean> =>
    new Promise((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
  for (let tries = 0; !(await up()); tries++) {
    if (tries > 200) throw new Error('the proxy did not start listening');
    await new Promise((r) => setTimeout(r, 100));
  }
  const mtaConfig = join(dir, 'volley.yaml');
  writeFileSync(
    mtaConfig,
    deliveryConfigYaml(`vmtas: [{ name: ip-2, ip: 127.0.0.2, helo: ip2.mta.test }]
pools: [{ name: p, vmtas: [{ name: ip-2 }] }]
default_pool: p
routes:
  - { domain: backlog.test, host: 127.0.0.1, port: ${backlogMx.port} }
  - { domain: mixed.test, host: 127.0.0.1, port: ${mixedMx.port} }
proxies:
  secret_file: ${secret}
  servers: [{ name: pipe-proxy, address: "127.0.0.1:${port}", fingerprint: "${tls.fingerprint}", sending_ips: [127.0.0.2] }]
throttles:
  - { destination: "*", max_connections: 1 }
delivery: { retry: [1h] }
`),
  );
  mta = await startMta({ configPath: mtaConfig, persistentPath: join(dir, 'mta'), workers: 1 });
}, 60_000);

afterAll(async () => {
  await mta?.stop();
  if (proxy?.pid !== undefined && proxy.exitCode === null) process.kill(-proxy.pid, 'SIGKILL');
  backlogMx?.server.close();
  mixedMx?.server.close();
});

/** Queues `messages` with delivery paused, then lets them go at once: a backlog for one connection. */
async function backlog(messages: { to: string[]; subject: string }[]): Promise<string[]> {
  await fetch(`${mta.adminUrl}/queue/pause`, { method: 'POST', headers: ADMIN_AUTH });
  const ids: string[] = [];
  for (const m of messages) ids.push(await inject(mta.smtpPort, 'a@shop.example', m.to, message(m.subject)));
  await fetch(`${mta.adminUrl}/queue/resume`, { method: 'POST', headers: ADMIN_AUTH });
  return ids;
}

test('a backlog over one proxied connection sends each envelope behind the previous body: about N round trips, not 2N', async () => {
  const n = 12;
  const ids = await backlog(Array.from({ length: n }, (_, i) => ({ to: [`r${i}@backlog.test`], subject: `b${i}` })));
  await waitUntil(() => attempts().filter((a) => ids.includes(a.message_id) && a.status === 'delivered').length === n, 30_000, () => JSON.stringify(attempts().slice(-3)));
  expect(backlogMx.bodies).toHaveLength(n);
  expect(backlogMx.connections).toBe(1);
  expect(new Set(attempts().filter((a) => ids.includes(a.message_id)).map((a) => a.via))).toEqual(new Set(['proxy:pipe-proxy']));
  // Every envelope but the first of the connection went out before the previous body's reply came back.
  expect(backlogMx.mailsBeforeFinal).toBe(n - 1);
}, 60_000);

test('replies stay matched to their transactions when a RCPT, a whole envelope and a body are refused mid-run', async () => {
  const run = [
    { to: ['a0@mixed.test'], subject: 'm0' },
    { to: ['a1@mixed.test', 'nobody1@mixed.test'], subject: 'm1' },
    { to: ['a2@mixed.test'], subject: 'm2' },
    { to: ['nobody3@mixed.test'], subject: 'm3' },
    { to: ['a4@mixed.test'], subject: 'later' },
    { to: ['a5@mixed.test'], subject: 'm5' },
    { to: ['a6@mixed.test'], subject: 'm6' },
  ];
  const ids = await backlog(run);
  const expected = run.reduce((k, m) => k + m.to.length, 0);
  const mine = (): Attempt[] => attempts().filter((a) => ids.includes(a.message_id));
  await waitUntil(() => mine().length === expected, 30_000, () => JSON.stringify(mine()));
  const outcome = (rcpt: string): [string, number] => {
    const a = mine().find((x) => x.recipient === rcpt)!;
    return [a.status, a.smtp_code];
  };
  expect(outcome('a0@mixed.test')).toEqual(['delivered', 250]);
  expect(outcome('a1@mixed.test')).toEqual(['delivered', 250]);
  expect(outcome('nobody1@mixed.test')).toEqual(['failed', 550]);
  expect(outcome('a2@mixed.test')).toEqual(['delivered', 250]);
  expect(outcome('nobody3@mixed.test')).toEqual(['failed', 550]);
  expect(outcome('a4@mixed.test')).toEqual(['deferred', 451]);
  expect(outcome('a5@mixed.test')).toEqual(['delivered', 250]);
  expect(outcome('a6@mixed.test')).toEqual(['delivered', 250]);
  // Each body the MX took is the one its reply went to: the 451 was the "later" message's, the 550s were m1's and m3's.
  expect(mixedMx.bodies.map((b) => /Subject: (\S+)/.exec(b)![1]).sort()).toEqual(['later', 'm0', 'm1', 'm2', 'm5', 'm6']);
  expect(mine().find((x) => x.recipient === 'a4@mixed.test')!.smtp_text).toMatch(/try again later/);
  // And the run was pipelined all the same.
  expect(mixedMx.mailsBeforeFinal).toBeGreaterThanOrEqual(4);
  expect(mixedMx.connections).toBe(1);
}, 60_000);

// The proxy's side in process (ProxyServer, ProxyConnector), where the test holds both ends.
describe('the proxy reading on while transactions are in flight', () => {
  const secret = newSecret();
  const source = { ip: '127.0.0.2', helo: 'vmta-2.test' };
  const may = { mode: 'may', policy: 'may' } as const;
  const body = (subject: string): Buffer => Buffer.from(`Subject: ${subject}\r\n\r\nbody\r\n`);
  const started: { stop: () => unknown }[] = [];
  afterEach(async () => {
    for (const s of started.splice(0).reverse()) await s.stop();
  });

  async function setup(mx: PipeliningMx, proxyOptions: { clientIdleTimeoutMs?: number } = {}) {
    const tls = await proxyTls(dir);
    const log = captureLogger();
    const p = await startProxy({ name: 'p', tls, secret, sendingIps: ['127.0.0.2'], logger: log.logger, ...proxyOptions });
    const connector = new ProxyConnector({ proxies: { '127.0.0.2': [{ host: '127.0.0.1', port: p.port, fingerprint: tls.fingerprint, name: 'p' }] }, secret, logger: captureLogger().logger });
    started.push({ stop: () => mx.server.close() }, { stop: () => p.server.stop() }, { stop: () => connector.close() });
    return { server: p.server, port: p.port, proxyTls: tls, log, connector, target: { host: 'mx.test', ip: '127.0.0.1', port: mx.port } };
  }

  test('the idle bound does not cut a link whose transactions wait on their MX longer than it; once they are answered it applies again', async () => {
    const mx = await pipeliningMx([], { holdFinalMs: 600 });
    const { port, proxyTls: ptls, log, target } = await setup(mx, { clientIdleTimeoutMs: 150 });
    // An MTA of an earlier release (no ping_ms in its hello): only the idle bound watches its link, not the liveness check.
    const socket = await new Promise<TLSSocket>((resolve, reject) => {
      const t = tlsConnect({ host: '127.0.0.1', port, ca: ptls.cert, checkServerIdentity: () => undefined }, () => resolve(t));
      t.once('error', reject);
    });
    const channel = new FrameChannel(socket);
    started.push({ stop: () => channel.close() });
    await clientHandshake(channel, secret, { timeoutMs: 5_000 });
    channel.send({ t: 'connect', sending_ip: source.ip, mx: target, helo: source.helo, tls: may });
    expect((await channel.next()).header.t).toBe('connected');
    channel.send({ t: 'transaction', from: 's@volley.test', to: ['one@dest.test'] }, body('one'));
    channel.send({ t: 'transaction', from: 's@volley.test', to: ['two@dest.test'] }, body('two'));
    // Each final reply is held four times the idle bound; both answers come all the same.
    expect((await channel.next()).header).toMatchObject({ t: 'result', recipients: [{ rcpt: 'one@dest.test', outcome: 'delivered' }] });
    expect((await channel.next()).header).toMatchObject({ t: 'result', recipients: [{ rcpt: 'two@dest.test', outcome: 'delivered' }] });
    expect(mx.mailsBeforeFinal).toBe(1);
    // Nothing in flight now: the link is closed as idle.
    await waitUntil(() => !channel.open, 5_000, () => 'the link is still open');
    expect(log.text()).toMatch(/proxy: MTA connection idle, closed/);
  });

  /** Two transactions pipelined over the proxy to an MX that holds its final replies: the first body is at the MX, the second envelope went with it. */
  async function twoPipelinedHeld() {
    const mx = await pipeliningMx([], { holdFinalMs: 300 });
    const { server, connector, target } = await setup(mx);
    const s = await connector.open(target, source, may);
    const first = s.send('s@volley.test', ['one@dest.test'], body('one'), { onBodySent: () => undefined });
    const second = s.send('s@volley.test', ['two@dest.test'], body('two'), { onBodySent: () => undefined });
    await waitUntil(() => mx.bodies.length === 1 && mx.mailsBeforeFinal === 1, 5_000, () => `bodies ${mx.bodies.length}, pipelined ${mx.mailsBeforeFinal}`);
    return { mx, server, connector, s, first, second };
  }

  test('a proxy told to stop answers the transactions already pipelined to the MX, and refuses one that comes after without sending it', async () => {
    const { mx, server, s, first, second } = await twoPipelinedHeld();
    const stopped = server.stop(10_000);
    const third = s.send('s@volley.test', ['three@dest.test'], body('three')).catch((e: Error) => e);
    expect((await first).recipients[0].outcome).toBe('delivered');
    expect((await second).recipients[0].outcome).toBe('delivered');
    const refused = await third;
    expect(refused).toBeInstanceOf(Error);
    expect((refused as Error).message).toMatch(/via proxy p: the proxy is stopping/);
    // Retried soon through any proxy (error_kind proxy-link), as a lost link is: it never reached the MX.
    expect((refused as { code?: string }).code).toBe('EPROXYLINK');
    await stopped;
    expect(mx.bodies.map((b) => b.split('\n')[0])).toEqual(['Subject: one', 'Subject: two']);
    s.close();
  });

  test('a reload that removes the sending IP mid-run: what is pipelined to the MX is answered, then the session is QUIT, never pooled', async () => {
    const { mx, server, connector, s, first, second } = await twoPipelinedHeld();
    server.reload({ ...server.settings, sendingIps: ['127.0.0.3'] });
    expect((await first).recipients[0].outcome).toBe('delivered');
    expect((await second).recipients[0].outcome).toBe('delivered');
    expect(s.usable).toBe(false);
    s.close();
    expect(mx.bodies).toHaveLength(2);
    await waitUntil(() => mx.chunks.some((c) => c.includes('QUIT')), 5_000, () => 'no QUIT at the MX');
    expect(server.stats().mxIdle).toBe(0);
    expect(connector.idleLinks()).toBe(1);
  });
});
