// `volley lb --workers 2` as real processes: a primary and two workers sharing
// the listening port, in front of real smtp-sinks, with real smtp-source
// load. What must stay one per node is checked here: /metrics and /status sum
// the workers, health decided by the primary reaches every worker (a
// restarted one too), SIGHUP's new backend list reaches every worker, and
// SIGTERM leaves no process behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { workerShare } from '../../../runtime/lb/primary';
import { resolveOptions } from '../../../runtime/lb/options';
import { runSmtpSource, startSmtpSink, type SmtpSinkHandle } from '../../helpers/postfix-tools';
import { childrenByParent } from '../../helpers/procs';
import { waitUntil } from '../../helpers/proxy-fixtures';
import { tempDir } from '../../helpers/tmp';
import { SmtpDialog } from '../../helpers/smtp-dialog';
import { closedPort, startFakeMta, type FakeMta } from './fake-mta';

const DIST = join(__dirname, '..', '..', '..', 'dist', 'volley.js');

interface WorkerView {
  worker: number;
  pid: number;
  connections?: number;
  listeners: { name: string; connections: number; backends: { address: string; up: boolean }[] }[];
}
interface NodeStatus {
  clientsAtLimit: string[];
  workers: WorkerView[];
  active: number;
  listeners: { name: string; counters: { connections: number; retries: number; noBackend: number; rejectedPerClient: number }; backends: { address: string; up: boolean; served: number }[] }[];
}

interface RunningLb {
  proc: ChildProcess;
  admin: string;
  log(): string;
  exited: Promise<number | null>;
  status(): Promise<NodeStatus>;
}

const dir = tempDir();
const running: RunningLb[] = [];
const sinks: SmtpSinkHandle[] = [];

afterEach(async () => {
  // A primary killed hard takes its workers with it (their IPC channel closes).
  for (const lb of running.splice(0)) {
    if (lb.proc.exitCode === null && lb.proc.signalCode === null) lb.proc.kill('SIGKILL');
    await lb.exited;
  }
  for (const s of sinks.splice(0)) await s.stop();
});

async function sink(): Promise<SmtpSinkHandle> {
  const s = await startSmtpSink({ maxConnections: 256 });
  sinks.push(s);
  return s;
}

async function startLb(args: string[], adminPort: number): Promise<RunningLb> {
  const proc = spawn(process.execPath, [DIST, 'lb', '--admin', `127.0.0.1:${adminPort}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const admin = `http://127.0.0.1:${adminPort}`;
  const lb: RunningLb = { proc, admin, log: () => log, exited, status: async () => (await (await fetch(`${admin}/status`)).json()) as NodeStatus };
  running.push(lb);
  await waitUntil(async () => (await fetch(`${admin}/readyz`).catch(() => undefined))?.status === 200, 30_000, () => log);
  return lb;
}

function workerPids(primary: number): number[] {
  return childrenByParent().get(primary) ?? [];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function send(port: number, messages: number): Promise<void> {
  const r = await runSmtpSource({ port, messages, sessions: 10, sizeBytes: 512, timeoutMs: 60_000 });
  expect({ code: r.exitCode, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
}

test('smtp-source through `volley lb --workers 2` reaches both smtp-sinks; /status and /metrics sum both workers; SIGTERM leaves no process', async () => {
  const [a, b] = [await sink(), await sink()];
  const [port, adminPort] = [await closedPort(), await closedPort()];
  const lb = await startLb(['--listen', `127.0.0.1:${port}=smtp`, '--backend', `127.0.0.1:${a.port}`, '--backend', `127.0.0.1:${b.port}`, '--workers', '2'], adminPort);
  const pids = [lb.proc.pid!, ...workerPids(lb.proc.pid!)];
  expect(pids).toHaveLength(3);

  await send(port, 400);
  await waitUntil(() => a.messages() + b.messages() === 400, 30_000, () => `sinks ${a.messages()} + ${b.messages()}`);
  expect(a.messages()).toBeGreaterThan(0);
  expect(b.messages()).toBeGreaterThan(0);

  const st = await lb.status();
  expect(st.workers.map((w) => w.pid).sort()).toEqual(pids.slice(1).sort());
  const perWorker = st.workers.map((w) => w.listeners[0].connections);
  // Both workers accepted (the kernel spreads accepts over them), and the node's figure is their sum.
  expect(perWorker.every((n) => n > 0)).toBe(true);
  expect(perWorker.reduce((x, y) => x + y, 0)).toBe(400);
  expect(st.listeners[0].counters.connections).toBe(400);
  expect(st.listeners[0].backends.map((x) => x.served).reduce((x, y) => x + y, 0)).toBe(400);
  const metrics = await (await fetch(`${lb.admin}/metrics`)).text();
  expect(metrics).toContain(`volley_lb_connections_total{listener="smtp-${port}"} 400`);
  // The primary's health gauge once, not once per worker.
  expect(metrics).toContain(`volley_lb_backend_up{listener="smtp-${port}",backend="127.0.0.1:${a.port}"} 1`);

  lb.proc.kill('SIGTERM');
  expect(await lb.exited).toBe(0);
  await waitUntil(() => !pids.some(alive), 10_000, () => `still alive: ${pids.filter(alive).join(' ')}`);
}, 90_000);

test('SIGHUP with a changed backend list reaches every worker; a reload that changes the listeners is refused and the running options stay', async () => {
  const [a, b] = [await sink(), await sink()];
  const [port, adminPort] = [await closedPort(), await closedPort()];
  const config = join(dir, 'lb-reload.yaml');
  const file = (listen: string, backend: number): void =>
    writeFileSync(config, ['listeners:', `  - name: front`, `    listen: ${listen}`, `    backends: ["127.0.0.1:${backend}"]`, ''].join('\n'));
  file(`127.0.0.1:${port}`, a.port);
  const lb = await startLb(['--config', config, '--workers', '2', '--health-interval', '200ms'], adminPort);
  await send(port, 20);
  await waitUntil(() => a.messages() === 20, 30_000, () => `sink a has ${a.messages()}`);

  file(`127.0.0.1:${port}`, b.port);
  lb.proc.kill('SIGHUP');
  const onlyB = (s: NodeStatus): boolean =>
    s.workers.length === 2 &&
    s.workers.every((w) => w.listeners[0].backends.map((x) => x.address).join() === `127.0.0.1:${b.port}`) &&
    s.listeners[0].backends.map((x) => x.address).join() === `127.0.0.1:${b.port}`;
  await waitUntil(async () => onlyB(await lb.status()), 10_000, () => lb.log());
  await send(port, 100);
  await waitUntil(() => b.messages() === 100, 30_000, () => `sink b has ${b.messages()}`);
  expect(a.messages()).toBe(20);

  // A listener on another port needs a restart: refused, logged, nothing changes.
  file(`127.0.0.1:${await closedPort()}`, a.port);
  lb.proc.kill('SIGHUP');
  await waitUntil(() => /reload refused/.test(lb.log()), 10_000, () => lb.log());
  expect(lb.log()).toMatch(/the listeners changed/);
  expect(onlyB(await lb.status())).toBe(true);
  expect(lb.proc.exitCode).toBeNull();
}, 90_000);

test("health is the node's: a dead backend goes down in every worker; a worker that dies is restarted and told the node's health", async () => {
  const a = await sink();
  const [port, adminPort, dead] = [await closedPort(), await closedPort(), await closedPort()];
  const lb = await startLb(
    ['--listen', `127.0.0.1:${port}=smtp`, '--backend', `127.0.0.1:${dead}`, '--backend', `127.0.0.1:${a.port}`, '--workers', '2', '--health-interval', '100ms', '--fall', '2'],
    adminPort,
  );
  const deadEverywhere = (s: NodeStatus): boolean =>
    s.listeners[0].backends[0].up === false && s.workers.length === 2 && s.workers.every((w) => w.listeners[0].backends[0].up === false);
  await waitUntil(async () => deadEverywhere(await lb.status()), 10_000, () => lb.log());

  const before = (await lb.status()).workers;
  const victim = before[0].pid;
  process.kill(victim, 'SIGKILL');
  await waitUntil(
    async () => {
      const s = await lb.status();
      return s.workers.length === 2 && !s.workers.some((w) => w.pid === victim) && deadEverywhere(s);
    },
    20_000,
    () => lb.log(),
  );
  expect(lb.log()).toMatch(/lb worker died; restarting it/);
  expect(workerPids(lb.proc.pid!)).toHaveLength(2);
  expect((await fetch(`${lb.admin}/readyz`)).status).toBe(200);

  // No client is sent to the dead backend first: no retries, no 421.
  await send(port, 50);
  await waitUntil(() => a.messages() === 50, 30_000, () => `sink a has ${a.messages()}`);
  const counters = (await lb.status()).listeners[0].counters;
  expect({ retries: counters.retries, noBackend: counters.noBackend }).toEqual({ retries: 0, noBackend: 0 });
}, 90_000);

test("--max-connections is the lb's: each worker takes its share, rounded up", () => {
  const options = resolveOptions({ listeners: [{ listen: '127.0.0.1:2525', backends: ['127.0.0.1:25'] }], maxConnections: 10 });
  expect(workerShare(options, 4).maxConnections).toBe(3);
  expect(workerShare(options, 1).maxConnections).toBe(10);
  expect(workerShare(options, 32).maxConnections).toBe(1);
  expect(options.maxConnections).toBe(10);
});

/** The first line the lb answers a new session on `port` with from 127.0.0.1: the MTA's greeting, or the lb's 421; the session is kept in `sessions`. */
async function firstLine(port: number, sessions: SmtpDialog[]): Promise<string> {
  const s = await SmtpDialog.open(port);
  sessions.push(s);
  const r = await s.reply();
  return `${r.code} ${r.text}`;
}

test("--max-connections-per-client is the node's, whichever worker accepts: a client whose sessions all land on one worker is not refused before its limit, and its sessions on both workers add up to the limit", async () => {
  const mtas: FakeMta[] = [await startFakeMta('mta')];
  const [port, adminPort] = [await closedPort(), await closedPort()];
  const lb = await startLb(['--listen', `127.0.0.1:${port}=smtp`, '--backend', `127.0.0.1:${mtas[0].port}`, '--workers', '2', '--max-connections-per-client', '4'], adminPort);
  const [a, b] = (await lb.status()).workers.map((w) => w.pid);
  const stopped = new Set<number>();
  const pause = (pid: number): void => {
    // Only the lb's own workers, which this test started; resumed in finally.
    expect(workerPids(lb.proc.pid!)).toContain(pid);
    process.kill(pid, 'SIGSTOP');
    stopped.add(pid);
  };
  const resume = (pid: number): void => {
    process.kill(pid, 'SIGCONT');
    stopped.delete(pid);
  };
  const sessions: SmtpDialog[] = [];
  const greeting = (): Promise<string> => firstLine(port, sessions);
  try {
    // Worker b stopped: every session lands on worker a (the kernel hands a connection to a worker that accepts).
    pause(b);
    const onA = [await greeting(), await greeting(), await greeting()];
    expect(onA).toEqual(Array(3).fill('220 mta ESMTP ready'));
    // Now only worker b accepts: the client has 3 open, 1 more is its limit (a split limit refused this one).
    resume(b);
    pause(a);
    expect(await greeting()).toBe('220 mta ESMTP ready');
    resume(a);
    // Once the workers' counts reach the primary (batched), the client is at the limit on every worker.
    await waitUntil(async () => (await lb.status()).clientsAtLimit.includes('127.0.0.1'), 10_000, () => lb.log());
    expect(await greeting()).toBe('421 4.7.0 too many connections from your address, try again later');
    // One closed: a slot for the client again, on whichever worker.
    sessions[0].destroy();
    await waitUntil(async () => { const st = await lb.status(); return st.active === 3 && st.clientsAtLimit.length === 0; }, 10_000, () => lb.log());
    expect(await greeting()).toBe('220 mta ESMTP ready');
    expect((await lb.status()).listeners[0].counters).toMatchObject({ connections: 5, rejectedPerClient: 1 });
  } finally {
    for (const pid of stopped) process.kill(pid, 'SIGCONT');
    for (const s of sessions) s.destroy();
    for (const m of mtas) await m.close();
  }
}, 90_000);

test('a client at its limit that closes a session and opens another at once is served, whichever worker takes it (a close at the limit is reported at once)', async () => {
  const mta = await startFakeMta('mta');
  const [port, adminPort] = [await closedPort(), await closedPort()];
  const lb = await startLb(['--listen', `127.0.0.1:${port}=smtp`, '--backend', `127.0.0.1:${mta.port}`, '--workers', '2', '--max-connections-per-client', '2'], adminPort);
  const sessions: SmtpDialog[] = [];
  const greeting = (): Promise<string> => firstLine(port, sessions);
  try {
    const answers: string[] = [];
    for (let round = 0; round < 5; round++) {
      expect([await greeting(), await greeting()]).toEqual(['220 mta ESMTP ready', '220 mta ESMTP ready']);
      await waitUntil(async () => (await lb.status()).clientsAtLimit.includes('127.0.0.1'), 10_000, () => lb.log());
      sessions[sessions.length - 2].destroy();
      await waitUntil(async () => (await lb.status()).active === 1, 10_000, () => lb.log());
      // Before: refused (421) until the closing worker's next batched report reached the primary.
      answers.push(await greeting());
      for (const s of sessions.splice(0)) s.destroy();
      await waitUntil(async () => { const st = await lb.status(); return st.active === 0 && st.clientsAtLimit.length === 0; }, 10_000, () => lb.log());
    }
    expect(answers).toEqual(Array(5).fill('220 mta ESMTP ready'));
  } finally {
    for (const s of sessions) s.destroy();
    await mta.close();
  }
}, 90_000);

test('a worker that cannot start (its port taken) stops the lb with ELISTEN, leaving no process, instead of being restarted in a loop', async () => {
  const taken = await sink();
  const adminPort = await closedPort();
  const proc = spawn(process.execPath, [DIST, 'lb', '--listen', `127.0.0.1:${taken.port}=smtp`, '--backend', `127.0.0.1:${await closedPort()}`, '--admin', `127.0.0.1:${adminPort}`, '--workers', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const seen = new Set<number>();
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  running.push({ proc, admin: '', log: () => log, exited, status: () => Promise.reject(new Error('no admin port')) });
  // Every worker the lb ever forks, while it runs: a restart loop would show as more than two.
  const watch = setInterval(() => workerPids(proc.pid!).forEach((p) => seen.add(p)), 20);
  try {
    await waitUntil(() => proc.exitCode !== null || seen.size > 2, 30_000, () => log);
  } finally {
    clearInterval(watch);
  }
  expect(seen.size).toBeLessThanOrEqual(2);
  expect(await exited).toBe(1);
  expect(log).toMatch(/cannot listen: bind EADDRINUSE/);
  expect(log).toMatch(/exited before it was ready \(code 1, signal null\).*\(ELISTEN\)/);
  await waitUntil(() => ![...seen].some(alive), 10_000, () => `still alive: ${[...seen].filter(alive).join(' ')}`);
}, 60_000);
