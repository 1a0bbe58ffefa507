import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ProxyConnector } from '../../../runtime/mta/delivery/connect/proxy-connector';
import { VOLLEY } from '../../helpers/mta-process';
import { getFreePort } from '../../helpers/postfix-tools';
import { captureLogger, newSecret, proxyTls, waitUntil } from '../../helpers/proxy-fixtures';
import { ScriptedMx } from '../../helpers/scripted-mx';
import { tempDir } from '../../helpers/tmp';

// Runs the shipped bundle. VOLLEY_BIN points elsewhere while the verb is not yet in dist/volley.js.
const BIN = process.env.VOLLEY_BIN ?? VOLLEY;
const dir = tempDir('volley-proxy-cli-');

test('`volley proxy --config` serves authenticated MTAs from its sending IPs, and the secret stays out of its log', async () => {
  const tls = await proxyTls(dir);
  const secret = newSecret();
  writeFileSync(join(dir, 'proxy.secret'), `${secret.toString()}\n`, { mode: 0o600 });
  const port = await getFreePort();
  const configPath = join(dir, 'proxy.yaml');
  writeFileSync(
    configPath,
    [
      'name: proxy-cli',
      `listen: 127.0.0.1:${port}`,
      `admin_listen: 127.0.0.1:${await getFreePort()}`, // not the default 7626, which a parallel run may hold
      'tls: { cert: proxy.crt, key: proxy.key }',
      'secret_file: proxy.secret',
      'allow_from: [127.0.0.0/8]',
      'sending_ips: [127.0.0.4, 127.0.0.5]',
      'idle_timeout: 2s',
      'max_transactions_per_session: 10',
      '',
    ].join('\n'),
  );
  const mx = new ScriptedMx();
  await mx.listen();
  let log = '';
  const proc: ChildProcess = spawn(process.execPath, [BIN, 'proxy', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const connector = new ProxyConnector({
    proxies: { '127.0.0.4': [{ host: '127.0.0.1', port, fingerprint: tls.fingerprint }], '127.0.0.5': [{ host: '127.0.0.1', port, fingerprint: tls.fingerprint }] },
    secret,
    timeouts: { connectMs: 2_000, greetingMs: 2_000 },
    logger: captureLogger().logger,
    name: 'mta-cli-test',
  });
  try {
    await waitUntil(() => log.includes('proxy: listening') || proc.exitCode !== null, 15_000);
    // Until bin/commands/index.ts registers the verb, the bundle says "unknown command 'proxy'".
    if (proc.exitCode !== null) throw new Error(`volley proxy exited ${proc.exitCode}:\n${log}`);
    for (const ip of ['127.0.0.4', '127.0.0.5', '127.0.0.4']) {
      const s = await connector.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, { ip, helo: 'cli.test' }, { mode: 'may', policy: 'may' });
      const tx = await s.send('a@volley.test', [`to-${ip}@dest.test`], Buffer.from(`Subject: ${ip}\r\n\r\nhi\r\n`));
      expect(tx.recipients[0].outcome).toBe('delivered');
      s.close();
    }
    await mx.waitFor(3);
    expect(mx.messages.map((m) => m.clientIp)).toEqual(['127.0.0.4', '127.0.0.5', '127.0.0.4']);
    expect(mx.connections).toBe(2); // the third rode the first one's MX session
    // A wrong secret: refused, logged, and the daemon stays up.
    const intruder = new ProxyConnector({ proxies: () => [{ host: '127.0.0.1', port, fingerprint: tls.fingerprint }], secret: newSecret(), logger: captureLogger().logger });
    await expect(intruder.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, { ip: '127.0.0.4', helo: 'x.test' }, { mode: 'may', policy: 'may' })).rejects.toMatchObject({ stage: 'auth' });
    await waitUntil(() => log.includes('authentication failed'));
    expect(proc.exitCode).toBeNull();
    expect(log).not.toContain(secret.toString());
  } finally {
    connector.close();
    proc.kill('SIGTERM');
    await new Promise((r) => (proc.exitCode !== null ? r(undefined) : proc.once('exit', r)));
    await mx.close();
  }
});

test('a bad config exits non-zero with every problem named', async () => {
  const configPath = join(dir, 'bad.yaml');
  writeFileSync(configPath, 'listen: 127.0.0.1:1\nsending_ips: []\n');
  const proc = spawn(process.execPath, [BIN, 'proxy', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise((r) => proc.once('exit', r));
  expect(code).toBe(1);
  expect(err).toContain('tls: cert and key files are required');
  expect(err).toContain('sending_ips: at least one sending IP is required');
});

test('SIGHUP reloads a running `volley proxy` (systemd\'s ExecReload) instead of killing it; /readyz answers on the admin port; SIGTERM stops it cleanly', async () => {
  const tls = await proxyTls(dir);
  const secret = newSecret();
  writeFileSync(join(dir, 'hup.secret'), secret, { mode: 0o600 });
  const [port, admin] = [await getFreePort(), await getFreePort()];
  const configPath = join(dir, 'hup.yaml');
  const config = (ips: string) => `name: proxy-hup\nlisten: 127.0.0.1:${port}\nadmin_listen: 127.0.0.1:${admin}\ntls: { cert: proxy.crt, key: proxy.key }\nsecret_file: hup.secret\nsending_ips: [${ips}]\n`;
  writeFileSync(configPath, config('127.0.0.2'));
  const mx = new ScriptedMx();
  await mx.listen();
  let log = '';
  const proc = spawn(process.execPath, [BIN, 'proxy', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  const connector = new ProxyConnector({
    proxies: () => [{ host: '127.0.0.1', port, fingerprint: tls.fingerprint }],
    secret,
    timeouts: { connectMs: 2_000, greetingMs: 2_000 },
    logger: captureLogger().logger,
    name: 'mta-hup-test',
  });
  const readyz = async (): Promise<number> => {
    try {
      return (await fetch(`http://127.0.0.1:${admin}/readyz`)).status;
    } catch {
      return 0;
    }
  };
  try {
    // Ready once every worker listens (the default: one per core).
    await waitUntil(() => log.includes('proxy: every worker listening') || proc.exitCode !== null, 15_000, () => log);
    expect(await readyz()).toBe(200);
    const before = await connector.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, { ip: '127.0.0.2', helo: 'hup.test' }, { mode: 'may', policy: 'may' });
    writeFileSync(configPath, config('127.0.0.2, 127.0.0.3'));
    proc.kill('SIGHUP');
    // A process killed by a signal has signalCode set and exitCode null.
    await waitUntil(() => log.includes('proxy: config reloaded') || proc.exitCode !== null || proc.signalCode !== null, 15_000, () => log);
    expect({ code: proc.exitCode, signal: proc.signalCode }).toEqual({ code: null, signal: null });
    // The session opened before the signal still delivers, and the added IP serves.
    expect((await before.send('a@volley.test', ['b@dest.test'], Buffer.from('Subject: before\r\n\r\nhi\r\n'))).recipients[0].outcome).toBe('delivered');
    before.close();
    const added = await connector.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, { ip: '127.0.0.3', helo: 'hup.test' }, { mode: 'may', policy: 'may' });
    expect((await added.send('a@volley.test', ['c@dest.test'], Buffer.from('Subject: added\r\n\r\nhi\r\n'))).recipients[0].outcome).toBe('delivered');
    added.close();
    expect(mx.messages.map((m) => m.clientIp)).toEqual(['127.0.0.2', '127.0.0.3']);
    expect(await readyz()).toBe(200);
  } finally {
    connector.close();
    proc.kill('SIGTERM');
    await mx.close();
  }
  expect(await exited).toEqual({ code: 0, signal: null });
  expect(log).toContain('proxy: stopped');
});

test('SIGINT then SIGTERM while a transaction is in flight: `volley proxy` waits for it, its MTA gets the answer, then it exits 0', async () => {
  const tls = await proxyTls(dir);
  const secret = newSecret();
  writeFileSync(join(dir, 'drain.secret'), secret, { mode: 0o600 });
  const [port, admin] = [await getFreePort(), await getFreePort()];
  const configPath = join(dir, 'drain.yaml');
  writeFileSync(configPath, `name: proxy-drain\nlisten: 127.0.0.1:${port}\nadmin_listen: 127.0.0.1:${admin}\ntls: { cert: proxy.crt, key: proxy.key }\nsecret_file: drain.secret\nsending_ips: [127.0.0.2]\n`);
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let held = 0;
  const mx = new ScriptedMx({ holdUntil: () => (held++, released) });
  await mx.listen();
  let log = '';
  const proc = spawn(process.execPath, [BIN, 'proxy', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  const running = (): boolean => proc.exitCode === null && proc.signalCode === null;
  const connector = new ProxyConnector({
    proxies: () => [{ host: '127.0.0.1', port, fingerprint: tls.fingerprint }],
    secret,
    timeouts: { connectMs: 2_000, greetingMs: 2_000 },
    logger: captureLogger().logger,
    name: 'mta-drain-test',
  });
  try {
    await waitUntil(() => log.includes('proxy: listening') || !running(), 15_000, () => log);
    const session = await connector.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, { ip: '127.0.0.2', helo: 'drain.test' }, { mode: 'may', policy: 'may' });
    const sent = session.send('a@volley.test', ['b@dest.test'], Buffer.from('Subject: in flight\r\n\r\nhi\r\n'));
    await waitUntil(() => held === 1);
    proc.kill('SIGINT');
    await waitUntil(() => log.includes('proxy: stopping') || !running(), 15_000, () => log);
    proc.kill('SIGTERM'); // as Ctrl-C under `volley local` does: the terminal's SIGINT, then volley local's SIGTERM
    await waitUntil(() => log.includes('proxy: already stopping') || !running(), 15_000, () => log);
    expect({ code: proc.exitCode, signal: proc.signalCode }).toEqual({ code: null, signal: null });
    release();
    expect((await sent).recipients[0].outcome).toBe('delivered');
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(mx.messages).toHaveLength(1);
  } finally {
    release();
    connector.close();
    if (running()) proc.kill('SIGKILL');
    await exited;
    await mx.close();
  }
});
