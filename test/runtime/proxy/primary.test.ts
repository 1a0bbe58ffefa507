// `volley proxy --workers 2` as real processes: what must stay one per node
// (metrics, readiness, reload, stop, a dead worker's replacement) holds over
// both workers. Each connection is steered onto a chosen worker by stopping
// the other (see test/helpers/proxy-process.ts).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ProxyAuthority } from '../../../runtime/mta/delivery/throttle/proxy-authority';
import { ProxyConnector } from '../../../runtime/mta/delivery/connect/proxy-connector';
import { LocalAuthority } from '../../../runtime/mta/delivery/throttle/throttle-authority';
import { Throttles } from '../../../runtime/mta/delivery/throttle/throttles';
import { throttleKey } from '../../../runtime/mta/delivery/throttle/throttle-key';
import { getFreePort } from '../../helpers/postfix-tools';
import { captureLogger, newSecret, proxyTls, waitUntil, type ProxyTls } from '../../helpers/proxy-fixtures';
import { startProxyProcess, type ProxyProcess } from '../../helpers/proxy-process';
import { ScriptedMx } from '../../helpers/scripted-mx';
import { tempDir } from '../../helpers/tmp';
import { pidAlive } from '../../helpers/procs';
import { serviceSpec, readUnitFile } from '../../rehearsal/unit-file';
import { exitCause, restartsOnExit } from '../../rehearsal/unit-runner';

const dir = tempDir('volley-proxy-primary-');
const mx = new ScriptedMx();
let tls: ProxyTls;
let secret: Buffer;
const running: ProxyProcess[] = [];

beforeAll(async () => {
  await mx.listen();
  tls = await proxyTls(dir);
  secret = newSecret();
  writeFileSync(join(dir, 'proxy.secret'), secret, { mode: 0o600 });
});

afterEach(async () => {
  for (const p of running.splice(0)) await p.stop();
});

afterAll(async () => {
  await mx.close();
});

async function proxyNode(name: string, ips = '127.0.0.2'): Promise<{ node: ProxyProcess; port: number; admin: number; configPath: string; write: (ips: string) => void }> {
  const [port, admin] = [await getFreePort(), await getFreePort()];
  const configPath = join(dir, `${name}.yaml`);
  const write = (sendingIps: string): void => writeFileSync(configPath, `name: ${name}\nlisten: 127.0.0.1:${port}\nadmin_listen: 127.0.0.1:${admin}\ntls: { cert: proxy.crt, key: proxy.key }\nsecret_file: proxy.secret\nsending_ips: [${sendingIps}]\nidle_timeout: 30s\n`);
  write(ips);
  const node = await startProxyProcess(configPath, 2);
  running.push(node);
  expect(node.workerPids()).toHaveLength(2);
  return { node, port, admin, configPath, write };
}

/** One MTA's delivery through the proxy on `port`, from `ip`; a fresh connector, so a new link (and a new accept). */
async function deliver(port: number, ip: string, token: string): Promise<void> {
  const connector = new ProxyConnector({ proxies: () => [{ host: '127.0.0.1', port, fingerprint: tls.fingerprint }], secret, timeouts: { connectMs: 2_000, greetingMs: 2_000 }, logger: captureLogger().logger, name: `mta-${token}` });
  try {
    const session = await connector.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, { ip, helo: 'workers.test' }, { mode: 'may', policy: 'may' });
    const tx = await session.send('a@volley.test', [`${token}@dest.test`], Buffer.from(`Subject: ${token}\r\n\r\nhi\r\n`));
    expect(tx.recipients[0].outcome).toBe('delivered');
    session.close();
  } finally {
    connector.close();
  }
}

const metric = (body: string, name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(body)?.[1]);
const get = async (admin: number, path: string): Promise<{ status: number; body: string }> => {
  try {
    const res = await fetch(`http://127.0.0.1:${admin}${path}`);
    return { status: res.status, body: await res.text() };
  } catch {
    return { status: 0, body: '' };
  }
};

test('/metrics sums the counters of both workers, and names how many listen', async () => {
  const { node, port, admin } = await proxyNode('metrics');
  const [a, b] = node.workerPids();
  await node.onlyWorker(a, async () => {
    for (const k of [1, 2, 3]) await deliver(port, '127.0.0.2', `ma${k}`);
  });
  await node.onlyWorker(b, async () => {
    for (const k of [1, 2]) await deliver(port, '127.0.0.2', `mb${k}`);
  });
  const { status, body } = await get(admin, '/metrics');
  expect(status).toBe(200);
  expect(metric(body, 'volley_proxy_authenticated_total')).toBe(5);
  expect(metric(body, 'volley_proxy_transactions_total')).toBe(5);
  // Each worker opened its own MX session (sessions do not cross workers) and reused it after.
  expect(metric(body, 'volley_proxy_mx_opened_total')).toBe(2);
  expect(metric(body, 'volley_proxy_mx_reused_total')).toBe(3);
  expect(metric(body, 'volley_proxy_workers')).toBe(2);
}, 60_000);

test('SIGHUP reaches every worker: an added sending IP serves on each, and the reload is logged once both run it', async () => {
  const { node, port, write } = await proxyNode('reload');
  write('127.0.0.2, 127.0.0.3');
  node.proc.kill('SIGHUP');
  await waitUntil(() => node.log().includes('proxy: config reloaded on every worker'), 15_000, () => node.log());
  for (const w of node.workerPids()) await node.onlyWorker(w, () => deliver(port, '127.0.0.3', `hup${w}`));
  expect(mx.messages.filter((m) => /Subject: hup/.test(m.body)).map((m) => m.clientIp)).toEqual(['127.0.0.3', '127.0.0.3']);
}, 60_000);

test('a worker killed -9 is forked again: the node is ready again and the new worker serves', async () => {
  const { node, port, admin } = await proxyNode('restart');
  const [dead, alive] = node.workerPids();
  process.kill(dead, 'SIGKILL');
  // One snapshot per poll: two scans could see the zombie in one (length 2) and neither it nor its
  // replacement in the other (dead gone), so the wait passed with one worker and no fresh one.
  let fresh: number | undefined;
  await waitUntil(() => {
    const pids = node.workerPids();
    fresh = pids.find((w) => w !== alive && w !== dead);
    return pids.length === 2 && pids.includes(alive) && fresh !== undefined;
  }, 15_000, () => node.log());
  await waitUntil(() => (node.log().match(/proxy: every worker listening/g) ?? []).length === 2, 15_000, () => node.log());
  expect((await get(admin, '/readyz')).status).toBe(200);
  await node.onlyWorker(fresh!, () => deliver(port, '127.0.0.2', 'restarted'));
  expect(node.log()).toContain('proxy: worker died; restarting it');
}, 60_000);

test('/readyz is 503 naming a sending IP no worker can bind, with every worker listening', async () => {
  const { admin } = await proxyNode('ready', '127.0.0.2, 192.0.2.77');
  const r = await get(admin, '/readyz');
  expect(r.status).toBe(503);
  expect(r.body).toContain('sending IP 192.0.2.77 cannot be bound on this host');
  expect(r.body).not.toContain('not listening');
}, 60_000);

test('SIGTERM to the primary stops every process of the node and exits 0', async () => {
  const { node } = await proxyNode('stop');
  const workers = node.workerPids();
  node.proc.kill('SIGTERM');
  expect(await node.exited).toEqual({ code: 0, signal: null });
  // The workers were the primary's children: once it has exited they are reaped by init, or gone.
  await waitUntil(() => workers.every((w) => !pidAlive(w)), 10_000, () => `still alive: ${workers.filter(pidAlive).join(', ')}`);
  expect(node.log()).toContain('proxy: stopped');
}, 60_000);

test('--workers that is not a whole number from 1 is refused by name', async () => {
  await expect(startProxyProcess(join(dir, 'none.yaml'), 0)).rejects.toThrow(/--workers "0": give a whole number of worker processes/);
});

test('a primary that hangs while its workers still answer pings: an acquire is refused ("not now") within the bound, a permit granted late is given back, and once it resumes permits flow', async () => {
  const { node, port } = await proxyNode('hung');
  const authority = new ProxyAuthority({
    proxyFor: () => ({ host: '127.0.0.1', port, fingerprint: tls.fingerprint, name: 'hung' }),
    fallback: new LocalAuthority(new Throttles({ throttles: [], backoff: [], rollups: [] })),
    secret,
    name: 'mta-hung',
    // The MTA would wait an hour for its answer: only the worker's own bound can end the wait.
    link: { answerMs: 3_600_000 },
    logger: captureLogger().logger,
  });
  const key = throttleKey('127.0.0.2', 'dest.test');
  const oneConn = { maxConnections: 1, maxMessagesPerHour: 100 };
  try {
    expect((await authority.tryMessage(key, oneConn)).ok).toBe(true);
    const primary = node.proc.pid!;
    process.kill(primary, 'SIGSTOP');
    let during: boolean;
    try {
      during = await authority.tryConnection(key, oneConn);
    } finally {
      process.kill(primary, 'SIGCONT');
    }
    expect(during).toBe(false);
    // The primary, resumed, grants the ask the worker gave up on, before it answers this one (IPC keeps order);
    // the worker gives that late permit back before it asks anything more, so the one permit is free.
    expect((await authority.tryMessage(key, oneConn)).ok).toBe(true);
    expect(await authority.tryConnection(key, oneConn)).toBe(true);
    expect(await authority.tryConnection(key, oneConn)).toBe(false);
  } finally {
    authority.close();
  }
}, 60_000);

test('the control tests\' limits at --workers 2, with the MTAs\' control links on different workers: 1 connection across three MTAs, and an hourly limit of 5', async () => {
  const { node, port } = await proxyNode('limits');
  const [wa, wb] = node.workerPids();
  const endpoint = { host: '127.0.0.1', port, fingerprint: tls.fingerprint, name: 'limits' };
  const [a, b, c] = [1, 2, 3].map(
    (i) =>
      new ProxyAuthority({
        proxyFor: () => endpoint,
        fallback: new LocalAuthority(new Throttles({ throttles: [], backoff: [], rollups: [] })),
        secret,
        name: `mta-${i}`,
        logger: captureLogger().logger,
      }),
  );
  const key = throttleKey('127.0.0.2', 'gmail');
  const hourly = { maxConnections: 1, maxMessagesPerHour: 5 };
  try {
    // A first ask dials each MTA's control link (it stays up): a's on one worker, b's on the other.
    expect((await node.onlyWorker(wa, () => a.tryMessage(key, hourly))).ok).toBe(true);
    expect((await node.onlyWorker(wb, () => b.tryMessage(key, hourly))).ok).toBe(true);
    const rest = [];
    for (const m of [c, a, b, c, a]) rest.push((await m.tryMessage(key, hourly)).ok);
    expect(rest).toEqual([true, true, true, false, false]);
    const first = await Promise.all([a, b, c].map((m) => m.tryConnection(key, hourly)));
    expect(first.filter(Boolean)).toHaveLength(1);
  } finally {
    for (const m of [a, b, c]) m.close();
  }
}, 60_000);

// node:cluster's own behaviour (a worker exits when its IPC channel drops), kept here: an orphan would hold the port.
test('a primary killed -9: its workers stop by themselves (no one would answer their throttle asks or restart them)', async () => {
  const { node } = await proxyNode('orphans');
  const workers = node.workerPids();
  process.kill(node.proc.pid!, 'SIGKILL');
  await node.exited;
  await waitUntil(() => workers.every((w) => !pidAlive(w)), 15_000, () => `still alive: ${workers.filter(pidAlive).join(', ')}`);
}, 60_000);

// A SIGHUP (the unit's ExecReload) in the half second after exec, before the primary listens for
// it, kills it; systemd counts death by SIGHUP as clean, so Restart=on-failure alone left the proxy down.
test('the shipped unit restarts a proxy primary killed by SIGHUP before it listens for one; a stop\'s SIGTERM is not restarted', () => {
  const shipped = serviceSpec(readUnitFile(join(__dirname, '..', '..', '..', 'assets', 'systemd', 'volley-proxy.service')));
  expect(exitCause(shipped, null, 'SIGHUP')).toBe('clean');
  expect(restartsOnExit(shipped, null, 'SIGHUP')).toBe(true);
  expect(restartsOnExit(shipped, null, 'SIGTERM')).toBe(false);
});
