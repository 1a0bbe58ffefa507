// `volley drain` with real processes on 127.0.0.1: a source MTA (the bundled
// `volley mta`) with deferred and partly delivered mail, drained by the
// bundled `volley drain` into test destinations (test/helpers/
// drain-destination.ts, on the shared protocol.ts). Checked by id at the
// destinations: every message once, with its remaining recipients, retry
// time, attempts and expiry; round-robin; failover; a SIGKILL mid-batch and
// a rerun (0 lost, 0 duplicates); SIGTERM (exit 42, the rest still queued,
// and a restarted MTA has it); a destination that refuses for good (exit 12);
// one that keeps answering 500 is given up (exit 12) and settled by a rerun.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { SpoolPartition } from '../../../runtime/mta/spool/partition';
import { ADMIN_TOKEN, deliveryConfigYaml, writeTestConfig } from '../../helpers/config';
import { startDrainDestination, type TestDestination } from '../../helpers/drain-destination';
import { startMta, VOLLEY, type MtaProcess } from '../../helpers/mta-process';
import { getFreePort, startSmtpSink, type SmtpSinkHandle } from '../../helpers/postfix-tools';
import { newSecret, proxyTls, waitUntil, type ProxyTls } from '../../helpers/proxy-fixtures';
import { inject, message } from '../../helpers/smtp-dialog';
import { tempDir } from '../../helpers/tmp';

const HOUR = 3_600_000;
const root = tempDir();
let runs = 0;
let tls: ProxyTls;
let secret: Buffer;
let secretFile: string;
let sink: SmtpSinkHandle;
const running: ChildProcess[] = [];
const mtas: MtaProcess[] = [];
const dests: TestDestination[] = [];

beforeAll(async () => {
  const dir = root;
  tls = await proxyTls(dir);
  secret = newSecret();
  secretFile = join(dir, 'drain.secret');
  writeFileSync(secretFile, secret);
  sink = await startSmtpSink();
});

afterEach(async () => {
  for (const p of running.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const m of mtas.splice(0)) await m.crash();
  for (const d of dests.splice(0)) await d.close();
});

afterAll(async () => {
  await sink.stop();
});

/** A source MTA: ok.test is delivered to the sink; down.test goes to a closed port and waits an hour. */
async function sourceMta(): Promise<{ mta: MtaProcess; config: string; pp: string }> {
  const dir = join(root, `src-${++runs}`);
  mkdirSync(dir);
  const config = join(dir, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`routes:
  - { domain: ok.test, host: 127.0.0.1, port: ${sink.port} }
  - { domain: "*", host: 127.0.0.1, port: 9 }
delivery:
  retry: [1h]
  max_lifetime: 2d
`),
  );
  const pp = join(dir, 'pp');
  const mta = await startMta({ configPath: config, persistentPath: pp, workers: 2 });
  mtas.push(mta);
  return { mta, config, pp };
}

let deferred = 0;
async function pollDeferred(mta: MtaProcess, n: number): Promise<void> {
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    const q = (await (await fetch(`${mta.adminUrl}/queue`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { workers: { byDomain?: Record<string, { deferred: number }> }[] };
    deferred = q.workers.reduce((s, w) => s + (w.byDomain?.['down.test']?.deferred ?? 0), 0);
    if (deferred >= n) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `n` messages: every third also to a recipient delivered at once; all wait an hour for down.test after one attempt. */
async function queued(mta: MtaProcess, n: number): Promise<string[]> {
  deferred = 0;
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const to = i % 3 === 0 ? [`r${i}@down.test`, `d${i}@ok.test`] : [`r${i}@down.test`];
    ids.push(await inject(mta.smtpPort, 'a@example.test', to, message(`m${i}`, `body ${i}`)));
  }
  await pollDeferred(mta, n);
  expect(deferred).toBe(n);
  return ids;
}

async function destination(): Promise<TestDestination> {
  const d = await startDrainDestination({ key: tls.key, cert: tls.cert, secret });
  dests.push(d);
  return d;
}

interface DrainRun {
  proc: ChildProcess;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

function drain(src: { mta: MtaProcess; config: string; pp: string }, targets: string[], extra: string[] = []): DrainRun {
  const proc = spawn(
    process.execPath,
    [VOLLEY, 'drain', ...targets, '--config', src.config, '--persistent-path', src.pp, '--admin', src.mta.adminAddress, '--secret-file', secretFile,
      '--insecure-tls', '--json', '--batch-size', '10', '--concurrency', '2', '--retry-delay', '100ms', '--request-timeout', '2s', ...extra],
    { env: { ...process.env, VOLLEY_ADMIN_TOKEN: ADMIN_TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.push(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { proc, done };
}

/** What is still queued in a (stopped) node's spool, by id. */
async function spoolIds(pp: string): Promise<string[]> {
  const ids: string[] = [];
  for (const p of ['p000', 'p001']) {
    const dir = join(pp, 'spool', p);
    if (!existsSync(dir)) continue;
    const part = await SpoolPartition.open({ dir });
    ids.push(...[...part.entries()].map((e) => e.id));
    await part.close();
  }
  return ids;
}

function resultLine(stdout: string): Record<string, unknown> {
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  return lines.filter((l) => l.type === 'result').pop()!;
}

test('drains every queued message once into two destinations round-robin, with its remaining recipients, retry time, attempts and expiry; the MTA is left stopped', async () => {
  const src = await sourceMta();
  const ids = await queued(src.mta, 40);
  const a = await destination();
  const b = await destination();
  const before = Date.now();
  const r = await drain(src, [a.label, b.label], ['--bind-ip', '127.0.0.2']).done;
  expect({ code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stderr: '' });
  // Every id at exactly one destination, none twice.
  const atA = [...a.queued.keys()];
  const atB = [...b.queued.keys()];
  expect([...atA, ...atB].sort()).toEqual([...ids].sort());
  expect(atA.filter((id) => b.queued.has(id))).toEqual([]);
  // Round-robin over batches of at most 10: batches are cut per spool partition, and
  // how 40 messages split over the two workers' partitions varies (21/19 makes five
  // batches), so the destinations differ by at most one batch.
  expect(Math.abs(atA.length - atB.length)).toBeLessThanOrEqual(10);
  expect(Math.min(atA.length, atB.length)).toBeGreaterThanOrEqual(10);
  ids.forEach((id, i) => {
    const m = (a.queued.get(id) ?? b.queued.get(id))!;
    expect(m.header.to).toEqual([`r${i}@down.test`]); // the ok.test recipient was delivered: it does not move
    expect(m.header.attempts).toBe(1);
    expect(m.header.next).toBeGreaterThan(before + HOUR / 2);
    expect(m.header.expires).toBe(m.header.received + 2 * 24 * HOUR);
    expect(m.header.via_original).toBe('smtp');
    expect(m.body.toString('latin1')).toContain(`body ${i}`);
  });
  // The drain stopped the MTA and left nothing queued; its journal is settled.
  await waitUntil(() => src.mta.proc.exitCode !== null, 10_000);
  expect(await spoolIds(src.pp)).toEqual([]);
  expect(existsSync(join(src.pp, 'drain', 'journal.jsonl'))).toBe(false);
  // The result line counts what each destination acknowledged (the split itself varies, above).
  expect(resultLine(r.stdout)).toMatchObject({ exit: 0, moved: { [a.label]: atA.length, [b.label]: atB.length } });
  expect([...a.peers, ...b.peers]).toEqual(['127.0.0.2', '127.0.0.2']); // --bind-ip
}, 120_000);

test('a destination that is down gets no message: its batches go to the next one; one that times out mid-batch gets that batch again on its next turn, and nothing arrives twice', async () => {
  const src = await sourceMta();
  const ids = await queued(src.mta, 30);
  const downPort = await getFreePort(); // nothing listens there
  const slow = await destination();
  const ok = await destination();
  slow.mode = 'hang';
  let seen = 0;
  slow.onBatch = () => {
    if (++seen === 1) setTimeout(() => (slow.mode = 'ok'), 2500); // after the source's 2 s timeout
  };
  const r = await drain(src, [`127.0.0.1:${downPort}`, slow.label, ok.label]).done;
  expect({ code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stderr: '' });
  const all = [...slow.queued.keys(), ...ok.queued.keys()].sort();
  expect(all).toEqual([...ids].sort());
  expect([...slow.queued.keys()].filter((id) => ok.queued.has(id))).toEqual([]);
  expect(slow.queued.size).toBeGreaterThan(0);
  expect(r.stderr).toContain(`127.0.0.1:${downPort}`);
  expect(await spoolIds(src.pp)).toEqual([]);
}, 120_000);

test('a destination that takes a batch and loses the connection before answering gets that batch again (it answers duplicate), never another destination', async () => {
  const src = await sourceMta();
  const ids = await queued(src.mta, 30);
  const cut = await destination();
  const other = await destination();
  cut.mode = 'commit-then-cut';
  cut.onBatch = () => {
    // Only the first batch: committed, the answer lost; then it behaves.
    setImmediate(() => (cut.mode = 'ok'));
    cut.onBatch = undefined;
  };
  const r = await drain(src, [cut.label, other.label]).done;
  expect({ code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stderr: '' });
  const all = [...cut.queued.keys(), ...other.queued.keys()];
  expect(all.sort()).toEqual([...ids].sort());
  expect(new Set(all).size).toBe(ids.length);
  expect(cut.duplicatesAnswered.length).toBe(10); // the lost batch came back to it, whole
  expect(await spoolIds(src.pp)).toEqual([]);
}, 120_000);

test('a destination that keeps answering 500 (it stores, then cannot say so) is given up after --max-attempts: exit 12 naming it and the ids it may hold, which stay here and never go elsewhere; once it recovers a rerun moves them to it alone, each once', async () => {
  const src = await sourceMta();
  const ids = await queued(src.mta, 30);
  const wedged = await destination();
  const ok = await destination();
  wedged.mode = 'commit-then-500';
  const run = drain(src, [wedged.label, ok.label], ['--max-attempts', '3']);
  let exited = false;
  void run.done.then(() => (exited = true));
  // Bounded by what the wedged destination was sent, not by time: without a bound it is sent the same batch forever.
  await waitUntil(() => exited || wedged.requests >= 12, 60_000, () => `requests to the wedged destination: ${wedged.requests}`);
  expect({ exited, requests: wedged.requests }).toEqual({ exited: true, requests: expect.any(Number) });
  const r = await run.done;
  expect({ code: r.code, stderr: r.code === 12 ? '' : r.stderr }).toEqual({ code: 12, stderr: '' });
  const atWedged = [...wedged.queued.keys()].sort();
  expect(atWedged.length).toBeGreaterThan(0);
  const result = resultLine(r.stdout) as { gaveUp: Record<string, { ids: string[] }> };
  expect(Object.keys(result.gaveUp)).toEqual([wedged.label]);
  expect([...result.gaveUp[wedged.label].ids].sort()).toEqual(atWedged);
  expect(r.stderr).toContain(`${wedged.label} was given up after`);
  for (const id of atWedged) expect(r.stderr).toContain(id);
  // Nothing lost: what the wedged one may hold is still queued here, and only that; the rest is at the other, none at both.
  expect((await spoolIds(src.pp)).sort()).toEqual(atWedged);
  expect([...ok.queued.keys()].sort()).toEqual(ids.filter((id) => !wedged.queued.has(id)).sort());
  // It recovers. The rerun names only the other destination: the held ids still go to it alone, which says duplicate.
  wedged.mode = 'ok';
  wedged.duplicatesAnswered.splice(0); // its retries while wedged were answered (500) after the same check
  const again = await drain(src, [ok.label]).done;
  expect({ code: again.code, stderr: again.code === 0 ? '' : again.stderr }).toEqual({ code: 0, stderr: '' });
  expect([...wedged.duplicatesAnswered].sort()).toEqual(atWedged);
  const all = [...wedged.queued.keys(), ...ok.queued.keys()];
  expect(all.sort()).toEqual([...ids].sort());
  expect(new Set(all).size).toBe(ids.length);
  expect(await spoolIds(src.pp)).toEqual([]);
  expect(existsSync(join(src.pp, 'drain', 'journal.jsonl'))).toBe(false);
}, 120_000);

test('SIGKILL of the drain mid-batch, then a rerun: 0 lost, 0 duplicates (the interrupted batch goes back to the same destination only)', async () => {
  const src = await sourceMta();
  const ids = await queued(src.mta, 50);
  const a = await destination();
  const b = await destination();
  const first = drain(src, [a.label, b.label]);
  let batches = 0;
  // The second batch to reach A is committed there, and the drain dies before it hears the answer.
  a.onBatch = () => {
    if (++batches === 2) first.proc.kill('SIGKILL');
  };
  const r1 = await first.done;
  expect(r1.signal).toBe('SIGKILL');
  a.onBatch = undefined;
  const left = await spoolIds(src.pp);
  expect(left.length).toBeGreaterThan(0);
  // The rerun names B only: what the journal left open at A still goes back to A, and to A alone.
  const r2 = await drain(src, [b.label]).done;
  expect({ code: r2.code, stderr: r2.code === 0 ? '' : r2.stderr }).toEqual({ code: 0, stderr: '' });
  const all = [...a.queued.keys(), ...b.queued.keys()];
  expect(all.sort()).toEqual([...ids].sort()); // none lost, none at both
  expect(new Set(all).size).toBe(ids.length);
  expect(a.duplicatesAnswered.length).toBeGreaterThan(0); // the killed batch was sent to A again, and A said duplicate
  expect(await spoolIds(src.pp)).toEqual([]);
}, 120_000);

test('a rerun whose journal destination now refuses for good: everything else moves, the drain ends with exit 12, and what the journal holds for it stays queued here', async () => {
  const src = await sourceMta();
  const ids = await queued(src.mta, 30);
  const a = await destination();
  const b = await destination();
  const first = drain(src, [a.label], ['--concurrency', '1']);
  a.onBatch = () => first.proc.kill('SIGKILL'); // the first batch: committed at A, unheard
  expect((await first.done).signal).toBe('SIGKILL');
  a.onBatch = undefined;
  a.mode = 'unauthorized';
  const r = await drain(src, [a.label, b.label]).done;
  expect({ code: r.code, stderr: r.code === 12 ? '' : r.stderr }).toEqual({ code: 12, stderr: '' });
  expect(r.stderr).toContain('HTTP 401');
  const left = await spoolIds(src.pp);
  expect(left.sort()).toEqual([...a.queued.keys()].sort()); // only what may be at A: never sent to B
  expect([...b.queued.keys()].sort()).toEqual(ids.filter((id) => !a.queued.has(id)).sort());
}, 120_000);

test('SIGKILL of the drain mid-batch, then the MTA started instead of a rerun: what the killed batch left at the destination is held, then removed once the destination says it has it; the rest is queued as before', async () => {
  const src = await sourceMta();
  await queued(src.mta, 30);
  const a = await destination();
  // One batch in flight: with two, the second may be journaled and never reach A, and what A lacks is
  // released only once the drain's last request is 2 minutes old (reconcile.ts), past this test's wait.
  const first = drain(src, [a.label], ['--concurrency', '1']);
  a.onBatch = () => first.proc.kill('SIGKILL'); // the first batch is committed at A, unheard
  expect((await first.done).signal).toBe('SIGKILL');
  a.onBatch = undefined;
  const atA = [...a.queued.keys()];
  expect(atA.length).toBeGreaterThan(0);
  const left = await spoolIds(src.pp);
  expect(left.filter((id) => a.queued.has(id)).length).toBe(atA.length); // still here too: the drain never heard
  const again = await startMta({ configPath: src.config, persistentPath: src.pp, workers: 2 });
  mtas.push(again);
  const count = async (): Promise<number> =>
    ((await (await fetch(`${again.adminUrl}/queue`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { queued: number }).queued;
  // Settled for what A has: removed here. (Other batches the killed drain had
  // journaled but A never committed stay held, journal and all, until their last
  // request is two minutes old: how many there are depends on timing, so the
  // journal itself may or may not be retired by now.)
  let n = -1;
  const poll = setInterval(() => void count().then((c) => (n = c), () => undefined), 100);
  try {
    await waitUntil(() => n === left.length - atA.length, 30_000, () => `queued ${n}`);
  } finally {
    clearInterval(poll);
  }
  await again.stop();
  const after = await spoolIds(src.pp);
  expect(after.filter((id) => a.queued.has(id))).toEqual([]);
}, 120_000);

test('SIGTERM mid-drain: a clean stop with exit 42, what was acknowledged is removed, the rest is still queued and a restarted MTA has it', async () => {
  const src = await sourceMta();
  const ids = await queued(src.mta, 50);
  const a = await destination();
  const run = drain(src, [a.label]);
  let batches = 0;
  a.onBatch = () => {
    if (++batches === 2) run.proc.kill('SIGTERM');
  };
  const r = await run.done;
  expect({ code: r.code, stderr: r.code === 42 ? '' : r.stderr }).toEqual({ code: 42, stderr: '' });
  const left = await spoolIds(src.pp);
  expect(left.length).toBe(ids.length - a.queued.size);
  expect(left.filter((id) => a.queued.has(id))).toEqual([]);
  expect(a.queued.size).toBeGreaterThanOrEqual(20); // the batch in flight at the signal finished too
  // The operator starts the MTA again instead: it has the rest.
  const again = await startMta({ configPath: src.config, persistentPath: src.pp, workers: 2 });
  mtas.push(again);
  const q = (await (await fetch(`${again.adminUrl}/queue`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { queued: number };
  expect(q.queued).toBe(left.length);
}, 120_000);

test('a message that cannot be read here: every other one moves, the drain names it and exits 11', async () => {
  const src = await sourceMta();
  const ids = await queued(src.mta, 6);
  await src.mta.stop();
  // The last message the drain will read (partition order), and where its record lies.
  let victim: { id: string; file: string; at: number } | undefined;
  for (const p of ['p000', 'p001']) {
    const dir = join(src.pp, 'spool', p);
    if (!existsSync(dir)) continue;
    const part = await SpoolPartition.open({ dir });
    const last = [...part.entries()].pop();
    if (last) victim = { id: last.id, file: join(dir, `${String(last.segment).padStart(12, '0')}.seg`), at: last.offset + last.length - 4 };
    await part.close();
  }
  const a = await destination();
  // Once the drain has opened the spool (its first batch is here), the victim's bytes go bad on disk.
  a.onBatch = () => {
    const fd = openSync(victim!.file, 'r+');
    writeSync(fd, Buffer.from('XXXX'), 0, 4, victim!.at);
    closeSync(fd);
    a.onBatch = undefined;
  };
  const r = await drain(src, [a.label], ['--batch-size', '1', '--concurrency', '1']).done;
  expect({ code: r.code, stderr: r.code === 11 ? '' : r.stderr }).toEqual({ code: 11, stderr: '' });
  expect([...a.queued.keys()].sort()).toEqual(ids.filter((id) => id !== victim!.id).sort());
  expect(r.stderr).toContain(`message ${victim!.id} cannot be read`);
  expect(resultLine(r.stdout)).toMatchObject({ exit: 11, unreadable: [{ id: victim!.id }] });
}, 120_000);

test('a destination that refuses for good (wrong secret): exit 12 with the reason, nothing removed', async () => {
  const src = await sourceMta();
  const ids = await queued(src.mta, 12);
  const a = await destination();
  a.mode = 'unauthorized';
  const r = await drain(src, [a.label]).done;
  expect(r.code).toBe(12);
  expect(r.stderr).toContain('HTTP 401');
  expect((await spoolIds(src.pp)).sort()).toEqual([...ids].sort());
}, 120_000);

/**
 * The MTA's admin API as far as `volley drain` uses it (it records the calls),
 * for a test that must show the node is not touched. The event wait against a
 * real event sink that is down is in drain-real.test.ts.
 */
async function adminWithStuckEvents(): Promise<{ server: Server; address: string; calls: string[] }> {
  const calls: string[] = [];
  const server = createServer((req, res) => {
    calls.push(`${req.method} ${req.url}`);
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${ADMIN_TOKEN}` && req.url !== '/healthz') return json(401, { error: 'token' });
    if (req.url === '/healthz') return json(200, { ok: true });
    if (req.url === '/drain/stop') return json(200, { draining: true, queued: 0, inflight: 0 });
    if (req.url === '/drain/resume') return json(200, { draining: false, queued: 0, inflight: 0 });
    if (req.url === '/events/status') return json(200, { node: 'n', sinks: [{ sink: 'hook', waitingEvents: 5, inFlightBatches: 1 }] });
    if (req.url === '/node/stop') return json(202, { stopping: true });
    json(404, { error: 'no' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address() as { port: number };
  return { server, address: `127.0.0.1:${a.port}`, calls };
}

function drainAgainst(admin: string, pp: string, extra: string[], dest = '127.0.0.1:2999'): DrainRun['done'] {
  const config = writeTestConfig(mkdirp(join(root, `cfg-${++runs}`)));
  const proc = spawn(
    process.execPath,
    [VOLLEY, 'drain', dest, '--config', config, '--persistent-path', pp, '--admin', admin, '--secret-file', secretFile, '--insecure-tls', ...extra],
    { env: { ...process.env, VOLLEY_ADMIN_TOKEN: ADMIN_TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.push(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

function mkdirp(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

test('a destination that is not host[:port]: exit 1 with a clear error before the node is touched', async () => {
  const admin = await adminWithStuckEvents();
  try {
    const r = await drainAgainst(admin.address, mkdirp(join(root, `pp-bad-${++runs}`)), [], 'mta-2:eighty');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('destination "mta-2:eighty" is not host[:port]');
    expect(admin.calls.filter((c) => c.startsWith('POST'))).toEqual([]);
  } finally {
    admin.server.close();
  }
}, 60_000);

test('a --request-timeout above 9m: exit 1 with a clear error before the node is touched, since a destination closes a connection silent for 10m and would cut the answer; 9m is taken', async () => {
  // Before, any duration was taken: with the destination's idle close at 2m, a source waiting longer on a
  // slow store had its answer cut and sent the batch again to the same destination, a wasted round.
  const admin = await adminWithStuckEvents();
  try {
    const r = await drainAgainst(admin.address, mkdirp(join(root, `pp-timeout-${++runs}`)), ['--request-timeout', '10m']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("option '--request-timeout <duration>' argument '10m' is invalid. must be at most 9m: a destination closes a connection silent for 10m, which would cut the answer");
    // At the ceiling it is taken: the run goes on to the next problem (the destination's spelling).
    const ok = await drainAgainst(admin.address, mkdirp(join(root, `pp-timeout-${++runs}`)), ['--request-timeout', '9m'], 'mta-2:eighty');
    expect(ok.code).toBe(1);
    expect(ok.stderr).toContain('destination "mta-2:eighty" is not host[:port]');
    expect(admin.calls.filter((c) => c.startsWith('POST'))).toEqual([]);
  } finally {
    admin.server.close();
  }
}, 60_000);

test('a --persistent-path that is not the running MTA\'s: exit 1 naming both, before the node is touched (its queue stays, intake stays open)', async () => {
  const src = await sourceMta();
  const ids = await queued(src.mta, 5);
  const a = await destination();
  // An empty directory, and another MTA's persistent path (its own node-id).
  const empty = mkdirp(join(root, `pp-empty-${++runs}`));
  const other = mkdirp(join(root, `pp-other-${++runs}`));
  writeFileSync(join(other, 'node-id'), 'mta-elsewhere\n');
  for (const [pp, said] of [[empty, 'holds no MTA'], [other, 'belongs to node "mta-elsewhere"']] as const) {
    const r = await drain(src, [a.label], ['--persistent-path', pp]).done;
    const said_ = `${r.stdout}${r.stderr}`;
    expect({ code: r.code, named: said_.includes(said) && said_.includes(src.pp === pp ? '' : 'give the drained MTA\'s own persistent path') }).toEqual({ code: 1, named: true });
  }
  expect(a.queued.size).toBe(0);
  // Untouched: still queued there, and still taking mail.
  await inject(src.mta.smtpPort, 'a@example.test', ['late@down.test'], message('late', 'body'));
  const q = (await (await fetch(`${src.mta.adminUrl}/queue`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { queued: number };
  expect(q.queued).toBe(ids.length + 1);
}, 120_000);
