import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deliveryConfigYaml } from '../../helpers/config';
import { VOLLEY, startMta, type MtaProcess } from '../../helpers/mta-process';
import { getFreePort } from '../../helpers/postfix-tools';
import { newSecret, proxyTls } from '../../helpers/proxy-fixtures';
import { ScriptedMx } from '../../helpers/scripted-mx';
import { inject, message } from '../../helpers/smtp-dialog';
import { tempDir } from '../../helpers/tmp';
import { readAttempts } from '../../helpers/attempt-log';

// The cluster as the seeds draw it, on loopback: 3 MTA processes, 2 proxy
// processes holding the sending IPs 127.0.0.2-3 and 127.0.0.4-5, one MX.
const dir = tempDir();
const mx = new ScriptedMx({ holdMs: 20 });
const reuseMx = new ScriptedMx();
const slowMx = new ScriptedMx({ holdMs: 150 });
const proxies: { name: string; ips: string[]; port: number; config: string; proc?: ChildProcess }[] = [
  { name: 'proxy-a', ips: ['127.0.0.2', '127.0.0.3'], port: 0, config: '' },
  { name: 'proxy-b', ips: ['127.0.0.4', '127.0.0.5'], port: 0, config: '' },
];
const mtas: MtaProcess[] = [];
// MXes that fail in the three ways the proxy protocol must tell apart.
const silent = createServer(() => undefined);
const closer = createServer((sock) => sock.destroy());
const listenRaw = (srv: Server): Promise<number> => new Promise((r) => srv.listen(0, '127.0.0.1', () => r((srv.address() as { port: number }).port)));
let refusedPort = 0;

async function startProxy(p: (typeof proxies)[number]): Promise<void> {
  // One worker: the reuse test needs the one pool of one process (cluster-workers.test.ts runs the limit at --workers 2).
  p.proc = spawn(process.execPath, [VOLLEY, 'proxy', '--config', p.config, '--workers', '1'], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  const until = Date.now() + 20_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = require('node:net').connect(p.port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (up) return;
    if (Date.now() > until) throw new Error(`${p.name} did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  await mx.listen();
  await reuseMx.listen();
  await slowMx.listen();
  const silentPort = await listenRaw(silent);
  const closerPort = await listenRaw(closer);
  refusedPort = await getFreePort();
  const secretFile = join(dir, 'secret');
  writeFileSync(secretFile, newSecret(), { mode: 0o600 });
  const servers: string[] = [];
  for (const p of proxies) {
    const pdir = join(dir, p.name);
    mkdirSync(pdir);
    const tls = await proxyTls(pdir);
    p.port = await getFreePort();
    p.config = join(pdir, 'proxy.yaml');
    // Each its own admin port: two proxies on one host cannot share the default 7626.
    writeFileSync(p.config, `name: ${p.name}\nlisten: 127.0.0.1:${p.port}\nadmin_listen: 127.0.0.1:${await getFreePort()}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\nsecret_file: ${secretFile}\nsending_ips: [${p.ips.join(', ')}]\nidle_timeout: 30s\n`);
    await startProxy(p);
    servers.push(`    - { name: ${p.name}, address: "127.0.0.1:${p.port}", fingerprint: "${tls.fingerprint}", sending_ips: [${p.ips.join(', ')}] }`);
  }
  const config = join(dir, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`vmtas:
${[2, 3, 4, 5].map((n) => `  - { name: ip-${n}, ip: 127.0.0.${n}, helo: ip${n}.mta.test }`).join('\n')}
routes:
  - { domain: reuse.test, host: 127.0.0.1, port: ${reuseMx.port} }
  - { domain: one.test, host: 127.0.0.1, port: ${slowMx.port} }
  - { domain: refused.test, host: 127.0.0.1, port: ${refusedPort} }
  - { domain: silent.test, host: 127.0.0.1, port: ${silentPort} }
  - { domain: closes.test, host: 127.0.0.1, port: ${closerPort} }
  - { domain: "*", host: 127.0.0.1, port: ${mx.port} }
proxies:
  secret_file: ${secretFile}
  servers:
${servers.join('\n')}
throttles:
  - { destination: one.test, max_connections: 1 }
delivery: { retry: [1s], greeting_timeout: 1s }
`),
  );
  for (let i = 0; i < 3; i++) mtas.push(await startMta({ configPath: config, persistentPath: join(dir, `mta-${i}`), workers: 1 }));
}, 60_000);

afterAll(async () => {
  for (const m of mtas) await m.stop();
  for (const p of proxies) if (p.proc?.exitCode === null) process.kill(-p.proc.pid!, 'SIGKILL');
  await mx.close();
  await reuseMx.close();
  await slowMx.close();
  silent.close();
  closer.close();
});

const viaVmta = (vmta: string, token: string): string => message(token, token, `X-Volley-VMTA: ${vmta}\r\n`);

test('every MTA sends from every IP through the proxy holding it, and the MX sees that IP and HELO', async () => {
  for (const [i, m] of mtas.entries()) {
    for (const n of [2, 3, 4, 5]) await inject(m.smtpPort, 'a@shop.example', [`x${i}${n}@dest.test`], viaVmta(`ip-${n}`, `t-${i}-${n}`));
  }
  await mx.waitFor(12);
  for (const msg of mx.messages) {
    const n = /t-\d-(\d)/.exec(msg.body)![1];
    expect([msg.clientIp, msg.helo]).toEqual([`127.0.0.${n}`, `ip${n}.mta.test`]);
  }
  const vias = new Set(mtas.flatMap((m) => readAttempts<{ via: string }>(join(m.persistentPath, 'log', 'events'))).map((e) => e.via));
  expect(vias).toEqual(new Set(['proxy:proxy-a', 'proxy:proxy-b']));
});

test('two transactions from two different MTAs to one MX travel over one MX connection', async () => {
  await inject(mtas[0].smtpPort, 'a@shop.example', ['one@reuse.test'], viaVmta('ip-3', 'reuse-1'));
  await reuseMx.waitFor(1);
  // The first MTA hands its session back after its idle second; the proxy keeps the MX side open.
  await new Promise((r) => setTimeout(r, 1500));
  await inject(mtas[1].smtpPort, 'a@shop.example', ['two@reuse.test'], viaVmta('ip-3', 'reuse-2'));
  await reuseMx.waitFor(2);
  expect(reuseMx.connections).toBe(1);
  expect(reuseMx.messages.map((m) => m.clientIp)).toEqual(['127.0.0.3', '127.0.0.3']);
});

test('a cluster limit of 1 connection holds across 3 MTAs with mail, and none is held to a third', async () => {
  await Promise.all(mtas.map((m, i) => Promise.all([0, 1, 2, 3].map((k) => inject(m.smtpPort, 'a@shop.example', [`c${i}${k}@one.test`], viaVmta('ip-4', `c-${i}-${k}`))))));
  await slowMx.waitFor(12, 30_000);
  expect(slowMx.maxOpen).toBe(1);
  // Every MTA got its turn at the one connection (the limit was shared, not split).
  const byMta = new Set(slowMx.messages.map((m) => /c-(\d)-/.exec(m.body)![1]));
  expect(byMta).toEqual(new Set(['0', '1', '2']));
}, 60_000);

test('through the proxy, an MX that refuses, one that never answers and one that closes before the greeting are told apart in the attempt log', async () => {
  const ids: Record<string, string> = {};
  for (const d of ['refused', 'silent', 'closes']) ids[d] = await inject(mtas[0].smtpPort, 'a@shop.example', [`x@${d}.test`], viaVmta('ip-2', `e-${d}`));
  const dir0 = join(mtas[0].persistentPath, 'log', 'events');
  const kindOf = (id: string): string | undefined => readAttempts<{ message_id: string; error_kind?: string }>(dir0).find((e) => e.message_id === id)?.error_kind;
  const until = Date.now() + 15_000;
  while (Object.values(ids).some((id) => kindOf(id) === undefined) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  expect(Object.fromEntries(Object.entries(ids).map(([d, id]) => [d, kindOf(id)]))).toEqual({ refused: 'refused', silent: 'timeout', closes: 'closed-before-greeting' });
});

test('kill -9 a proxy in the middle of a run and start it again: the MTAs carry on and nothing is lost', async () => {
  const before = mx.messages.length;
  const tokens: string[] = [];
  const sending = (async () => {
    for (let k = 0; k < 60; k++) {
      const token = `k-${k}`;
      await inject(mtas[k % 3].smtpPort, 'a@shop.example', [`k${k}@dest.test`], viaVmta(k % 2 ? 'ip-2' : 'ip-4', token));
      tokens.push(token);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  await new Promise((r) => setTimeout(r, 250));
  const a = proxies[0];
  process.kill(-a.proc!.pid!, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 800));
  await startProxy(a);
  await sending;
  const until = Date.now() + 30_000;
  const arrived = (): Set<string> => new Set(mx.messages.slice(before).map((m) => /Subject: (\S+)/.exec(m.body)![1]));
  while (tokens.some((t) => !arrived().has(t)) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
  expect(tokens.filter((t) => !arrived().has(t))).toEqual([]);
}, 60_000);
