// Fencing the local MTA: intake is stopped over its admin API (POST
// /drain/stop with the admin token) before the SIGTERM; without a token, or
// when the admin API does not answer in time, the SIGTERM goes alone; no lock,
// nothing to fence; a stale lock whose pid is now another program (a live
// process this test starts and kills), nothing to fence either, and no MTA
// running (liveMtaPid).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fenceMta, liveMtaPid } from '../../../runtime/mirror/mta-fence';
import { listen } from '../../../runtime/shared/listen';
import { fakeMta as startFakeMta, ownProcess } from '../../helpers/fake-mta';
import { captureLogger } from '../../helpers/proxy-fixtures';
import { pidAlive } from '../../helpers/procs';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir('volley-mta-fence-');
const FAKE_PID = 4_000_000; // never signalled: the kill hook records it

async function fakeAdmin(answer: boolean): Promise<{ port: number; events: string[]; close: () => Promise<void> }> {
  const events: string[] = [];
  const held: ServerResponse[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    events.push(`${req.method} ${req.url} ${req.headers.authorization ?? '-'}`);
    if (!answer) return void held.push(res);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"queued":3,"inflight":0}');
  });
  const port = await listen(server, 0, '127.0.0.1');
  return {
    port,
    events,
    close: () =>
      new Promise<void>((r) => {
        for (const res of held) res.destroy();
        server.close(() => r());
      }),
  };
}

function captured(text: string): Record<string, unknown>[] {
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

function persistentPath(name: string, lock = true): string {
  const pp = join(dir, name);
  mkdirSync(pp);
  if (lock) writeFileSync(join(pp, 'mta.lock'), `${FAKE_PID}\n`);
  return pp;
}

test('with a token: POST /drain/stop with it first, then the SIGTERM', async () => {
  const admin = await fakeAdmin(true);
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, 'secret-token\n');
  const { logger, text } = captureLogger();
  try {
    await fenceMta({ persistentPath: persistentPath('a'), mtaAdmin: { address: '127.0.0.1', port: admin.port }, tokenFile, logger, kill: (pid) => admin.events.push(`kill ${pid}`) }, 'test');
    expect(admin.events).toEqual(['POST /drain/stop Bearer secret-token', `kill ${FAKE_PID}`]);
    expect(text()).toContain('fenced the MTA\'s intake');
  } finally {
    await admin.close();
  }
});

test('without a token the SIGTERM goes alone; an admin API that does not answer in time does not hold it back', async () => {
  const silent = await fakeAdmin(false);
  const killed: number[] = [];
  const { logger, text } = captureLogger();
  const saved = process.env.VOLLEY_ADMIN_TOKEN;
  delete process.env.VOLLEY_ADMIN_TOKEN;
  try {
    await fenceMta({ persistentPath: persistentPath('b'), mtaAdmin: { address: '127.0.0.1', port: silent.port }, logger, kill: (pid) => killed.push(pid) }, 'test');
    expect(silent.events).toEqual([]);
    expect(killed).toEqual([FAKE_PID]);
    process.env.VOLLEY_ADMIN_TOKEN = 'env-token';
    await fenceMta({ persistentPath: persistentPath('c'), mtaAdmin: { address: '127.0.0.1', port: silent.port }, logger, kill: (pid) => killed.push(pid), intakeTimeoutMs: 50 }, 'test');
    expect(killed).toEqual([FAKE_PID, FAKE_PID]);
    const refused = captured(text()).filter((l) => l.msg === 'mirror: could not stop the MTA\'s intake over its admin API: SIGTERM alone stops it').pop();
    expect(String(refused?.err)).toMatch(/^POST \/drain\/stop: .*(abort|timeout)/i);
  } finally {
    if (saved === undefined) delete process.env.VOLLEY_ADMIN_TOKEN;
    else process.env.VOLLEY_ADMIN_TOKEN = saved;
    await silent.close();
  }
});

test('no MTA lock: nothing to fence', async () => {
  const killed: number[] = [];
  const { logger, text } = captureLogger();
  await fenceMta({ persistentPath: persistentPath('d', false), mtaAdmin: { address: '127.0.0.1', port: 1 }, logger, kill: (pid) => killed.push(pid) }, 'test');
  expect(killed).toEqual([]);
  expect(text()).toContain('nothing to fence');
});

test('a stale lock whose pid is now an unrelated live process: no intake call, no signal, and the log says the lock is stale', async () => {
  const admin = await fakeAdmin(true);
  const tokenFile = join(dir, 'token-stale');
  writeFileSync(tokenFile, 'secret-token\n');
  const killed: number[] = [];
  const { logger, text } = captureLogger();
  try {
    // The MTA died by kill -9 (its lock stayed) and its pid went to someone else's program.
    const other = await ownProcess('sleep', ['1000']);
    const pp = persistentPath('stale', false);
    writeFileSync(join(pp, 'mta.lock'), `${other.pid}\n`);
    await fenceMta({ persistentPath: pp, mtaAdmin: { address: '127.0.0.1', port: admin.port }, tokenFile, logger, kill: (pid) => killed.push(pid) }, 'test');
    expect(killed).toEqual([]);
    expect(admin.events).toEqual([]);
    expect(pidAlive(other.pid)).toBe(true);
    expect(text()).toContain('the MTA lock is stale');
    expect(text()).toContain('sleep 1000');
  } finally {
    await admin.close();
  }
});

test('a live `volley mta` on this persistent path is fenced; one on another persistent path is not', async () => {
  const killed: number[] = [];
  const { logger } = captureLogger();
  const saved = process.env.VOLLEY_ADMIN_TOKEN;
  delete process.env.VOLLEY_ADMIN_TOKEN;
  try {
    const pp = persistentPath('live', false);
    const mta = await startFakeMta(dir, pp);
    writeFileSync(join(pp, 'mta.lock'), `${mta.pid}\n`);
    await fenceMta({ persistentPath: pp, mtaAdmin: { address: '127.0.0.1', port: 1 }, logger, kill: (pid) => killed.push(pid) }, 'test');
    expect(killed).toEqual([mta.pid]);
    // The pid went to the MTA of another path on this host (a local fleet's other node): not this path's.
    const elsewhere = await startFakeMta(dir, persistentPath('elsewhere', false));
    writeFileSync(join(pp, 'mta.lock'), `${elsewhere.pid}\n`);
    await fenceMta({ persistentPath: pp, mtaAdmin: { address: '127.0.0.1', port: 1 }, logger, kill: (pid) => killed.push(pid) }, 'test');
    expect(killed).toEqual([mta.pid]);
  } finally {
    if (saved === undefined) delete process.env.VOLLEY_ADMIN_TOKEN;
    else process.env.VOLLEY_ADMIN_TOKEN = saved;
  }
});

test('liveMtaPid: a stale lock whose pid is now an unrelated live process is no running MTA; a `volley mta` on this path is', async () => {
  const pp = persistentPath('live-check', false);
  const other = await ownProcess('sleep', ['1000']);
  writeFileSync(join(pp, 'mta.lock'), `${other.pid}\n`);
  expect(liveMtaPid(pp)).toBeUndefined();
  const mta = await startFakeMta(dir, pp);
  writeFileSync(join(pp, 'mta.lock'), `${mta.pid}\n`);
  expect(liveMtaPid(pp)).toBe(mta.pid);
  await mta.stop();
  expect(liveMtaPid(pp)).toBeUndefined();
});
