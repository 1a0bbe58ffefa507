// A real `volley proxy` process that stops answering without closing
// anything (SIGSTOP: its host hung, its network pulled). The MTA's side runs
// here, with a small ping interval injected: its control link takes the
// proxy for dead within the bound (a pending ask is answered "not now", not
// after an hour), its pooled delivery links to it are dropped, and the next
// session goes through the other proxy holding the sending IP. Once the
// process resumes, the control link is back. The proxy is a primary and its
// workers: the whole node (its process group, which this test created) is
// stopped and resumed, as a hung host would be, and killed at the end.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ProxyAuthority } from '../../../runtime/mta/delivery/throttle/proxy-authority';
import { ProxyConnector, type ProxyEndpoint } from '../../../runtime/mta/delivery/connect/proxy-connector';
import { LocalAuthority } from '../../../runtime/mta/delivery/throttle/throttle-authority';
import { Throttles } from '../../../runtime/mta/delivery/throttle/throttles';
import type { ProxyServer } from '../../../runtime/proxy/server';
import { VOLLEY } from '../../helpers/mta-process';
import { getFreePort } from '../../helpers/postfix-tools';
import { captureLogger, newSecret, proxyTls, startProxy, waitUntil } from '../../helpers/proxy-fixtures';
import { ScriptedMx } from '../../helpers/scripted-mx';
import { tempDir } from '../../helpers/tmp';
import { throttleKey } from '../../../runtime/mta/delivery/throttle/throttle-key';

const dir = tempDir('volley-stopped-proxy-');
const PING_MS = 100;
const key = throttleKey('127.0.0.2', 'dest.test');
const hourly = { maxConnections: 10, maxMessagesPerHour: 100 };
const mx = new ScriptedMx();
let child: ChildProcess | undefined;
let other: { server: ProxyServer; port: number } | undefined;
let authority: ProxyAuthority | undefined;
let connector: ProxyConnector | undefined;

afterAll(async () => {
  authority?.close();
  connector?.close();
  // Ours, by the pid we hold, only while it still runs: resumed first so it can die.
  if (child?.pid && child.exitCode === null && child.signalCode === null) {
    process.kill(-child.pid, 'SIGCONT');
    process.kill(-child.pid, 'SIGKILL');
    await new Promise((r) => child!.once('exit', r));
  }
  await other?.server.stop();
  await mx.close();
});

test('SIGSTOP a proxy: within the bound the MTA answers "not now", drops its links and delivers through the other proxy; SIGCONT: the link is back', async () => {
  await mx.listen();
  const secret = newSecret();
  const secretFile = join(dir, 'secret');
  writeFileSync(secretFile, secret, { mode: 0o600 });
  const tls = await proxyTls(dir);
  const port = await getFreePort();
  const config = join(dir, 'proxy.yaml');
  writeFileSync(config, `name: stopped\nlisten: 127.0.0.1:${port}\nadmin_listen: 127.0.0.1:${await getFreePort()}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\nsecret_file: ${secretFile}\nsending_ips: [127.0.0.2]\n`);
  let output = '';
  child = spawn(process.execPath, [VOLLEY, 'proxy', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  await waitUntil(() => output.includes('proxy: every worker listening'), 20_000, () => output);
  other = await startProxy({ name: 'other', tls, secret, sendingIps: ['127.0.0.2'], logger: captureLogger().logger });
  const stopped: ProxyEndpoint = { host: '127.0.0.1', port, fingerprint: tls.fingerprint, name: 'stopped' };
  const healthy: ProxyEndpoint = { host: '127.0.0.1', port: other.port, fingerprint: tls.fingerprint, name: 'other' };
  authority = new ProxyAuthority({
    proxyFor: () => stopped,
    fallback: new LocalAuthority(new Throttles({ throttles: [], backoff: [], rollups: [] })),
    secret,
    name: 'mta',
    // A grant is waited for an hour: only the liveness check can end a wait on the stopped proxy.
    link: { pingMs: PING_MS, answerMs: 3_600_000, connectMs: 500, backoffMinMs: 100, backoffMaxMs: 200 },
    logger: captureLogger().logger,
  });
  connector = new ProxyConnector({
    proxies: { '127.0.0.2': [stopped, healthy] },
    secret,
    link: { pingMs: PING_MS, connectMs: 500 },
    logger: captureLogger().logger,
  });
  const target = { host: 'mx.test', ip: '127.0.0.1', port: mx.port };
  const source = { ip: '127.0.0.2', helo: 'vmta-2.test' };

  expect((await authority.tryMessage(key, hourly)).ok).toBe(true);
  const first = await connector.open(target, source, { mode: 'may', policy: 'may' });
  expect(first.info.via).toBe('proxy:stopped');
  await first.send('s@volley.test', ['one@dest.test'], Buffer.from('Subject: one\r\n\r\nx\r\n'));
  first.close();
  expect(connector.idleLinks()).toBe(1);

  process.kill(-child.pid!, 'SIGSTOP');
  let answer: boolean | undefined;
  void authority.tryMessage(key, hourly).then((r) => (answer = r.ok));
  await waitUntil(() => answer !== undefined && connector!.idleLinks() === 0, 10_000, () => `answer ${String(answer)}, idle links ${connector!.idleLinks()}`);
  expect(answer).toBe(false);
  expect(authority.connected(key)).toBe(false);
  const next = await connector.open(target, source, { mode: 'may', policy: 'may' });
  expect(next.info.via).toBe('proxy:other');
  await next.send('s@volley.test', ['two@dest.test'], Buffer.from('Subject: two\r\n\r\nx\r\n'));
  next.close();
  await mx.waitFor(2);

  process.kill(-child.pid!, 'SIGCONT');
  await waitUntil(() => authority!.connected(key) === true, 10_000, () => output.slice(-2000));
  expect((await authority.tryMessage(key, hourly)).ok).toBe(true);
});
