// The proxy daemon's reload (what SIGHUP runs) against a real MTA-side link
// (dialProxy + raw frames, so each MX session is seen as it is) and a real
// smtp-sink as the MX; and its admin port's /readyz and /metrics.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ProxyDaemon } from '../../../runtime/proxy/daemon';
import { dialProxy, type FrameChannel, type FrameHeader } from '../../../runtime/shared/proxy-protocol';
import { startSmtpSink, type SmtpSinkHandle } from '../../helpers/postfix-tools';
import { ScriptedMx } from '../../helpers/scripted-mx';
import { captureLogger, newSecret, proxyTls, waitUntil, type ProxyTls } from '../../helpers/proxy-fixtures';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir('volley-proxy-daemon-');
const otherDir = tempDir('volley-proxy-other-tls-');
const rotatedDir = tempDir('volley-proxy-rotated-');
// Secret files of their own for each rotation test.
const rotationDirs = [tempDir('volley-proxy-rotation-'), tempDir('volley-proxy-previous-file-'), tempDir('volley-proxy-mta-previous-')];
const secret = newSecret();
let tls: ProxyTls;
let sink: SmtpSinkHandle;
const daemons: ProxyDaemon[] = [];
const channels: FrameChannel[] = [];

beforeAll(async () => {
  tls = await proxyTls(dir);
  writeFileSync(join(dir, 'proxy.secret'), secret, { mode: 0o600 });
  sink = await startSmtpSink({ countConnections: true });
});

afterAll(async () => {
  for (const c of channels) c.close();
  await Promise.all(daemons.map((d) => d.stop()));
  await sink.stop();
});

interface Settings {
  sendingIps: string[];
  maxTx?: number;
  logLevel?: string;
  listen?: string;
  tls?: { cert: string; key: string };
  allowFrom?: string;
  secretFile?: string;
  previousSecretFile?: string;
}

function configText(s: Settings): string {
  return [
    'name: proxy-reload',
    `listen: ${s.listen ?? '127.0.0.1:0'}`,
    'admin_listen: 127.0.0.1:0',
    `tls: { cert: ${s.tls?.cert ?? 'proxy.crt'}, key: ${s.tls?.key ?? 'proxy.key'} }`,
    `secret_file: ${s.secretFile ?? 'proxy.secret'}`,
    ...(s.previousSecretFile ? [`previous_secret_file: ${s.previousSecretFile}`] : []),
    `allow_from: [${s.allowFrom ?? '127.0.0.0/8'}]`,
    `sending_ips: [${s.sendingIps.join(', ')}]`,
    'idle_timeout: 60s',
    `max_transactions_per_session: ${s.maxTx ?? 100}`,
    `log_level: ${s.logLevel ?? 'info'}`,
    '',
  ].join('\n');
}

async function startDaemon(file: string, s: Settings, probe?: (ip: string) => Promise<boolean>) {
  writeFileSync(file, configText(s));
  const log = captureLogger();
  const daemon = new ProxyDaemon({ configFile: file, logger: () => log.logger, probe });
  daemons.push(daemon);
  const ports = await daemon.start();
  return { daemon, log, ...ports };
}

async function link(port: number, fingerprint = tls.fingerprint, options: { secret?: Buffer; previousSecret?: Buffer; channel?: 'delivery' | 'control' } = {}): Promise<FrameChannel> {
  const { channel } = await dialProxy({ host: '127.0.0.1', port, fingerprint }, { secret, connectTimeoutMs: 5_000, handshakeTimeoutMs: 5_000, name: 'mta-test', ...options });
  channels.push(channel);
  return channel;
}

async function connect(channel: FrameChannel, ip: string, mxPort = sink.port): Promise<FrameHeader> {
  channel.send({ t: 'connect', sending_ip: ip, mx: { host: 'mx.test', ip: '127.0.0.1', port: mxPort }, helo: 'reload.test', tls: 'never' });
  return (await channel.next(10_000)).header;
}

let n = 0;
async function transaction(channel: FrameChannel): Promise<FrameHeader> {
  n++;
  channel.send({ t: 'transaction', from: 'a@volley.test', to: [`r${n}@dest.test`] }, Buffer.from(`Subject: ${n}\r\n\r\nmessage ${n}\r\n`));
  return (await channel.next(10_000)).header;
}

const counts = () => JSON.stringify(sink.counts());

test('a reload applies a changed file without closing MTA links or MX sessions; a removed IP\'s idle session is QUIT, an added one serves', async () => {
  const file = join(dir, 'live.yaml');
  const { daemon, log, port } = await startDaemon(file, { sendingIps: ['127.0.0.2', '127.0.0.3'] });
  const busy = await link(port);
  expect(await connect(busy, '127.0.0.2')).toMatchObject({ t: 'connected', reused: false });
  expect(await transaction(busy)).toMatchObject({ t: 'result', usable: true });
  // Another MTA link leaves an idle MX session from 127.0.0.3 in the pool.
  const other = await link(port);
  expect(await connect(other, '127.0.0.3')).toMatchObject({ t: 'connected' });
  expect(await transaction(other)).toMatchObject({ t: 'result', usable: true });
  other.send({ t: 'release', reuse: true });
  await waitUntil(() => daemon.server.stats().mxIdle === 1);
  const before = sink.counts();
  expect(before.connections).toBe(2);

  writeFileSync(file, configText({ sendingIps: ['127.0.0.2', '127.0.0.4'], maxTx: 5, logLevel: 'debug', listen: '127.0.0.1:1' }));
  expect(await daemon.reload()).toBe(true);

  // The removed IP's idle session got a QUIT; the session in use did not end.
  await waitUntil(() => sink.quits() === before.quits + 1, 5_000, counts);
  expect(sink.sessionsEnded()).toBe(before.sessionsEnded + 1);
  expect(daemon.server.stats().mxIdle).toBe(0);
  // Both links are still open, and the busy one carries on over the same MX session.
  expect(busy.open && other.open).toBe(true);
  expect(await transaction(busy)).toMatchObject({ t: 'result', usable: true, recipients: [expect.objectContaining({ outcome: 'delivered' })] });
  expect(sink.connections()).toBe(2);
  // The new sending IP serves, over the link that was open before the reload; the removed one is refused.
  expect(await connect(other, '127.0.0.3')).toMatchObject({ t: 'connect_failed', kind: 'ip-not-hosted' });
  expect(await connect(other, '127.0.0.4')).toMatchObject({ t: 'connected', reused: false, session: expect.objectContaining({ local_ip: '127.0.0.4' }) });
  // Limits and log level are live; the listen address needs a restart and says so.
  expect(daemon.server.settings.maxTransactionsPerSession).toBe(5);
  expect(daemon.log.level).toBe('debug');
  expect(daemon.server.settings.listen).toEqual({ address: '127.0.0.1', port: 0 });
  expect((await link(port)).open).toBe(true); // still listening where it was
  const warned = log.lines().find((l) => l.setting === 'listen');
  expect(warned).toMatchObject({ level: 40, wanted: '127.0.0.1:1', msg: expect.stringContaining('changes only on a restart') });
  expect(log.lines().find((l) => l.msg === 'proxy: config reloaded')).toMatchObject({ applied: expect.arrayContaining(['sending_ips', 'max_transactions_per_session', 'log_level']), needs_restart: ['listen'], retired_mx_sessions: 1 });
});

test('a sending IP removed while its sessions are in use: a transaction finishes, then each session is QUIT and none is pooled', async () => {
  const file = join(dir, 'removed.yaml');
  const { daemon, port } = await startDaemon(file, { sendingIps: ['127.0.0.2', '127.0.0.3'] });
  const channel = await link(port);
  expect(await connect(channel, '127.0.0.3')).toMatchObject({ t: 'connected' });
  const idle = await link(port);
  expect(await connect(idle, '127.0.0.3')).toMatchObject({ t: 'connected' });
  const before = sink.counts();
  writeFileSync(file, configText({ sendingIps: ['127.0.0.2'] }));
  expect(await daemon.reload()).toBe(true);
  expect(await transaction(channel)).toMatchObject({ t: 'result', usable: false, recipients: [expect.objectContaining({ outcome: 'delivered' })] });
  await waitUntil(() => sink.quits() === before.quits + 1, 5_000, counts);
  // The other session is handed back with reuse asked for: it is QUIT, not pooled.
  idle.send({ t: 'release', reuse: true });
  await waitUntil(() => sink.quits() === before.quits + 2, 5_000, counts);
  channel.send({ t: 'release', reuse: true });
  expect(await connect(channel, '127.0.0.3')).toMatchObject({ t: 'connect_failed', kind: 'ip-not-hosted' });
  expect(daemon.server.stats().mxIdle).toBe(0);
});

test('a broken file, a missing TLS file or a mismatched TLS pair: the reload is refused, logged, counted, and the running config keeps serving', async () => {
  const file = join(dir, 'broken.yaml');
  const { daemon, log, port, adminPort } = await startDaemon(file, { sendingIps: ['127.0.0.2'] });
  const channel = await link(port);
  expect(await connect(channel, '127.0.0.2')).toMatchObject({ t: 'connected' });
  const other = await proxyTls(otherDir);
  const broken = [
    'sending_ips: [127.0.0.2\nlisten: [',
    configText({ sendingIps: ['not-an-ip'], logLevel: 'loud' }),
    configText({ sendingIps: ['127.0.0.3'], tls: { cert: 'missing.crt', key: 'missing.key' } }),
    configText({ sendingIps: ['127.0.0.3'], tls: { cert: other.certPath, key: tls.keyPath } }),
  ];
  for (const text of broken) {
    writeFileSync(file, text);
    expect(await daemon.reload()).toBe(false);
  }
  const refused = log.lines().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('proxy: reload refused, the running config is kept'));
  expect(refused.map((l) => l.level)).toEqual([50, 50, 50, 50]);
  expect(refused[1]).toMatchObject({ code: 'ECONFIG', problems: expect.stringMatching(/"not-an-ip" is not an IP address[\s\S]*log_level/) });
  expect(refused[2]).toMatchObject({ code: 'ETLSFILES' });
  expect(refused[3]).toMatchObject({ problems: expect.stringContaining('key values mismatch') });
  expect(daemon.server.settings.sendingIps).toEqual(['127.0.0.2']);
  // Still serving as before, the open session and new links alike.
  expect(await transaction(channel)).toMatchObject({ t: 'result', usable: true });
  const fresh = await link(port);
  expect(await connect(fresh, '127.0.0.3')).toMatchObject({ t: 'connect_failed', kind: 'ip-not-hosted' });
  const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  expect(metrics).toContain('volley_proxy_reloads_total{result="failed"} 4');
  expect(metrics).toContain('volley_proxy_reloads_total{result="ok"} 0');
});

test('a new TLS pair on reload: new links see the new certificate, the link open before keeps working', async () => {
  const file = join(dir, 'rotate.yaml');
  const { daemon, port } = await startDaemon(file, { sendingIps: ['127.0.0.2'] });
  const old = await link(port);
  expect(await connect(old, '127.0.0.2')).toMatchObject({ t: 'connected' });
  const next = await proxyTls(rotatedDir);
  writeFileSync(file, configText({ sendingIps: ['127.0.0.2'], tls: { cert: next.certPath, key: next.keyPath } }));
  expect(await daemon.reload()).toBe(true);
  await expect(link(port, tls.fingerprint)).rejects.toMatchObject({ stage: 'tls' });
  expect((await link(port, next.fingerprint)).open).toBe(true);
  expect(await transaction(old)).toMatchObject({ t: 'result', usable: true });
});

test('/readyz answers 503 naming what is missing until every sending IP can be bound, then 200; /healthz 200; /metrics shows the counters', async () => {
  const up = new Set(['127.0.0.2']);
  const { adminPort, port } = await startDaemon(join(dir, 'ready.yaml'), { sendingIps: ['127.0.0.2', '127.0.0.5'] }, async (ip) => up.has(ip));
  const get = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${adminPort}${path}`);
    return { status: res.status, body: await res.text() };
  };
  const notReady = await get('/readyz');
  expect(notReady.status).toBe(503);
  expect(JSON.parse(notReady.body)).toEqual({ ok: false, reasons: ['sending IP 127.0.0.5 cannot be bound on this host'] });
  expect((await get('/healthz')).status).toBe(200);
  up.add('127.0.0.5');
  expect(await get('/readyz')).toMatchObject({ status: 200, body: expect.stringContaining('"ok": true') });

  const channel = await link(port);
  expect(await connect(channel, '127.0.0.5')).toMatchObject({ t: 'connected' });
  expect(await transaction(channel)).toMatchObject({ t: 'result' });
  const metrics = (await get('/metrics')).body;
  for (const line of ['volley_proxy_clients 1', 'volley_proxy_authenticated_total 1', 'volley_proxy_mx_opened_total 1', 'volley_proxy_transactions_total 1', 'volley_proxy_mx_idle 0', 'volley_proxy_refused_total 0', 'volley_proxy_mx_reused_total 0', 'volley_proxy_reloads_total{result="ok"} 0']) {
    expect(metrics).toContain(`\n${line}\n`);
  }
});

test('stop (SIGTERM) lets a transaction in flight finish and answer its MTA, closes idle links at once, refuses new ones and QUITs every MX session', async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let held = 0;
  const mx = new ScriptedMx({ holdUntil: () => (held++, released) });
  await mx.listen();
  try {
    const { daemon, port, adminPort } = await startDaemon(join(dir, 'stop.yaml'), { sendingIps: ['127.0.0.2', '127.0.0.3'] });
    const busy = await link(port);
    expect(await connect(busy, '127.0.0.2', mx.port)).toMatchObject({ t: 'connected' });
    const idle = await link(port);
    expect(await connect(idle, '127.0.0.3', mx.port)).toMatchObject({ t: 'connected' });
    // The MX holds the final dot: the transaction is in flight when the stop comes.
    n++;
    busy.send({ t: 'transaction', from: 'a@volley.test', to: [`r${n}@dest.test`] }, Buffer.from('Subject: in flight\r\n\r\nhi\r\n'));
    const answer = busy.next(10_000);
    await waitUntil(() => held === 1);
    const stopped = daemon.stop(600_000);
    await waitUntil(() => !idle.open);
    expect(busy.open).toBe(true);
    await expect(link(port)).rejects.toThrow();
    const readyz = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
    expect({ status: readyz.status, body: await readyz.json() }).toEqual({ status: 503, body: { ok: false, reasons: ['the proxy is stopping'] } });
    release();
    expect((await answer).header).toMatchObject({ t: 'result', recipients: [expect.objectContaining({ outcome: 'delivered' })] });
    await stopped;
    await waitUntil(() => !busy.open && mx.open === 0, 5_000, () => `busy link open: ${busy.open}, MX sessions open: ${mx.open}`);
    expect(mx.messages.map((m) => m.clientIp)).toEqual(['127.0.0.2']);
  } finally {
    release();
    await mx.close();
  }
});

test('stop with no grace cuts a transaction in flight: its MTA gets no answer (and retries), the MX session is dropped', async () => {
  const mx = new ScriptedMx({ holdUntil: () => new Promise<void>(() => undefined) });
  await mx.listen();
  try {
    const { daemon, port } = await startDaemon(join(dir, 'cut.yaml'), { sendingIps: ['127.0.0.2'] });
    const busy = await link(port);
    expect(await connect(busy, '127.0.0.2', mx.port)).toMatchObject({ t: 'connected' });
    busy.send({ t: 'transaction', from: 'a@volley.test', to: ['cut@dest.test'] }, Buffer.from('Subject: cut\r\n\r\nhi\r\n'));
    await waitUntil(() => mx.open === 1 && mx.attempts.size === 1);
    await daemon.stop(0);
    await expect(busy.next(10_000)).rejects.toThrow();
    await waitUntil(() => mx.open === 0);
  } finally {
    await mx.close();
  }
});

// pino children follow their parent's level, so this holds without the server
// tracking its links' loggers; the test keeps it so.
test('a reload\'s log_level reaches links opened before it (they live for hours): debug lines appear on an old link', async () => {
  const file = join(dir, 'level.yaml');
  writeFileSync(file, configText({ sendingIps: ['127.0.0.2'], logLevel: 'info' }));
  const log = captureLogger();
  // As the CLI does: the logger starts at the file's level.
  const daemon = new ProxyDaemon({ configFile: file, logger: (c) => Object.assign(log.logger, { level: c.logLevel ?? 'info' }) });
  daemons.push(daemon);
  const { port } = await daemon.start();
  const handedOut = () => log.lines().filter((l) => l.msg === 'proxy: session handed out');
  const channel = await link(port);
  expect(await connect(channel, '127.0.0.2')).toMatchObject({ t: 'connected' });
  expect(handedOut()).toHaveLength(0);
  channel.send({ t: 'release', reuse: true });
  writeFileSync(file, configText({ sendingIps: ['127.0.0.2'], logLevel: 'debug' }));
  expect(await daemon.reload()).toBe(true);
  expect(await connect(channel, '127.0.0.2')).toMatchObject({ t: 'connected', reused: true });
  expect(handedOut()).toEqual([expect.objectContaining({ level: 20, mta: 'mta-test', sending_ip: '127.0.0.2', reused: true })]);
});

test('a reload that narrows allow_from cuts the links it no longer allows: idle and control links at once, a transaction in flight after its answer; new links are refused', async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let held = 0;
  const mx = new ScriptedMx({ holdUntil: () => (held++, released) });
  await mx.listen();
  try {
    const file = join(dir, 'narrow.yaml');
    const { daemon, log, port } = await startDaemon(file, { sendingIps: ['127.0.0.2', '127.0.0.3'] });
    const busy = await link(port);
    expect(await connect(busy, '127.0.0.2', mx.port)).toMatchObject({ t: 'connected' });
    const idle = await link(port);
    expect(await connect(idle, '127.0.0.3', mx.port)).toMatchObject({ t: 'connected' });
    const control = await link(port, tls.fingerprint, { channel: 'control' });
    n++;
    busy.send({ t: 'transaction', from: 'a@volley.test', to: [`r${n}@dest.test`] }, Buffer.from('Subject: in flight\r\n\r\nhi\r\n'));
    const answer = busy.next(10_000);
    await waitUntil(() => held === 1);

    // The links all come from 127.0.0.1, which the new list leaves out.
    writeFileSync(file, configText({ sendingIps: ['127.0.0.2', '127.0.0.3'], allowFrom: '127.0.0.2/32' }));
    expect(await daemon.reload()).toBe(true);
    await waitUntil(() => !idle.open && !control.open, 5_000, () => `idle open: ${idle.open}, control open: ${control.open}`);
    expect(busy.open).toBe(true);
    await expect(link(port)).rejects.toThrow();
    release();
    // The MTA gets the answer for the message the MX took (so it is not sent twice), then the link ends.
    expect((await answer).header).toMatchObject({ t: 'result', recipients: [expect.objectContaining({ outcome: 'delivered' })] });
    await waitUntil(() => !busy.open);
    expect(log.lines().find((l) => l.msg === 'proxy: config reloaded')).toMatchObject({ applied: expect.arrayContaining(['allow_from']), revoked_links: { closed: 2, afterTransaction: 1 } });
    expect(mx.messages).toHaveLength(1);
    // Its MX sessions are QUIT, so the MX below closes without waiting on them.
    await daemon.stop(0);
  } finally {
    release();
    await mx.close();
  }
});

test('secret rotation: the proxy takes the current secret or <secret_file>.previous (proving back with the one the MTA proved); removing it and reloading cuts the links still on it', async () => {
  const rotation = rotationDirs[0];
  const current = newSecret();
  const previous = newSecret();
  writeFileSync(join(rotation, 'proxy.secret'), current, { mode: 0o600 });
  writeFileSync(join(rotation, 'proxy.secret.previous'), previous, { mode: 0o600 });
  const file = join(rotation, 'proxy.yaml');
  const settings: Settings = { sendingIps: ['127.0.0.2'], tls: { cert: tls.certPath, key: tls.keyPath } };
  const { daemon, log, port, adminPort } = await startDaemon(file, settings);
  const onOld = await link(port, tls.fingerprint, { secret: previous });
  const onNew = await link(port, tls.fingerprint, { secret: current });
  expect(await connect(onOld, '127.0.0.2')).toMatchObject({ t: 'connected' });
  expect(await transaction(onOld)).toMatchObject({ t: 'result', usable: true });
  expect(log.lines().filter((l) => l.msg === 'proxy: MTA authenticated with the previous secret (a rotation is not finished on this MTA)')).toHaveLength(1);
  const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  expect(metrics).toContain('volley_proxy_authenticated_previous_secret_total 1');
  await expect(link(port, tls.fingerprint, { secret: newSecret() })).rejects.toMatchObject({ stage: 'auth' });

  // The rotation ends: the previous secret is gone from the disk, and a reload shuts out what still holds it.
  rmSync(join(rotation, 'proxy.secret.previous'));
  expect(await daemon.reload()).toBe(true);
  await waitUntil(() => !onOld.open);
  expect(onNew.open).toBe(true);
  await expect(link(port, tls.fingerprint, { secret: previous })).rejects.toMatchObject({ stage: 'auth' });
  expect(log.lines().find((l) => l.msg === 'proxy: config reloaded')).toMatchObject({ applied: ['previous_secret'], revoked_links: { closed: 1, afterTransaction: 0 } });
});

test('previous_secret_file names the previous secret explicitly; one that is missing or under 32 bytes refuses the reload and keeps the running config', async () => {
  const rotation = rotationDirs[1];
  const previous = newSecret();
  writeFileSync(join(rotation, 'proxy.secret'), newSecret(), { mode: 0o600 });
  writeFileSync(join(rotation, 'old.secret'), previous, { mode: 0o600 });
  writeFileSync(join(rotation, 'short.secret'), 'x'.repeat(31), { mode: 0o600 });
  const file = join(rotation, 'proxy.yaml');
  const base: Settings = { sendingIps: ['127.0.0.2'], tls: { cert: tls.certPath, key: tls.keyPath } };
  const { daemon, log, port } = await startDaemon(file, { ...base, previousSecretFile: 'old.secret' });
  const onOld = await link(port, tls.fingerprint, { secret: previous });
  for (const bad of ['missing.secret', 'short.secret']) {
    writeFileSync(file, configText({ ...base, previousSecretFile: bad }));
    expect(await daemon.reload()).toBe(false);
  }
  const refused = log.lines().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('proxy: reload refused'));
  expect(refused).toEqual([expect.objectContaining({ code: 'ESECRET', problems: expect.stringContaining('missing.secret') }), expect.objectContaining({ code: 'ESECRET', problems: expect.stringContaining('needs at least 32') })]);
  expect(onOld.open).toBe(true);
  expect((await link(port, tls.fingerprint, { secret: previous })).open).toBe(true);
});

test('an MTA given the previous secret too tries it once when the proxy refuses the current one (a proxy not rotated yet)', async () => {
  const rotation = rotationDirs[2];
  const old = newSecret();
  writeFileSync(join(rotation, 'proxy.secret'), old, { mode: 0o600 });
  const file = join(rotation, 'proxy.yaml');
  const { log, port } = await startDaemon(file, { sendingIps: ['127.0.0.2'], tls: { cert: tls.certPath, key: tls.keyPath } });
  const channel = await link(port, tls.fingerprint, { secret: newSecret(), previousSecret: old });
  expect(await connect(channel, '127.0.0.2')).toMatchObject({ t: 'connected' });
  // One refusal (the current secret), one success: no more attempts than that.
  expect(log.lines().filter((l) => l.reason === 'bad-proof')).toHaveLength(1);
  expect(log.lines().filter((l) => l.msg === 'proxy: MTA authenticated')).toHaveLength(1);
  // Without the previous secret, the same MTA is refused.
  await expect(link(port, tls.fingerprint, { secret: newSecret() })).rejects.toMatchObject({ stage: 'auth', refusedOurProof: true });
});
