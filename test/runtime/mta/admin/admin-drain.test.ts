// The MTA side of `volley drain`, on a real `volley mta`: POST /drain/stop
// turns intake away everywhere (a new SMTP session gets 421 4.3.2, an open
// one gets it at its next command and is closed, the HTTP API answers 503,
// /readyz 503 so the load balancers move away) and pauses delivery;
// POST /drain/resume undoes it; jobs waiting behind an operator's pause are
// given back, not waited for; POST /node/stop stops the node.
import { join } from 'node:path';
import { ADMIN_AUTH, TEST_TOKEN, writeTestConfig } from '../../../helpers/config';
import { startMta, type MtaProcess } from '../../../helpers/mta-process';
import { SmtpDialog } from '../../../helpers/smtp-dialog';
import { tempDir } from '../../../helpers/tmp';
import { waitUntil } from '../../../helpers/proxy-fixtures';

const dir = tempDir();
let mta: MtaProcess;

beforeAll(async () => {
  mta = await startMta({ configPath: writeTestConfig(dir), persistentPath: join(dir, 'pp'), workers: 2 });
});

afterAll(async () => {
  await mta.crash();
});

const post = (path: string): Promise<Response> => fetch(`${mta.adminUrl}${path}`, { method: 'POST', headers: ADMIN_AUTH });
const httpSend = (): Promise<Response> =>
  fetch(`${mta.httpUrl}/v1/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_TOKEN}` },
    body: JSON.stringify({ messages: [{ from: 'a@example.test', to: ['b@example.test'], subject: 's', text: 'hello' }] }),
  });

test('drain stop: SMTP 421 4.3.2 to new sessions and at the next command of open ones, HTTP 503, /readyz 503, delivery paused; resume undoes it', async () => {
  const open = await SmtpDialog.open(mta.smtpPort);
  expect((await open.reply()).code).toBe(220);
  expect((await open.command('EHLO before.test')).code).toBe(250);

  const stop = await post('/drain/stop');
  expect(stop.status).toBe(200);
  expect(await stop.json()).toMatchObject({ draining: true, inflight: 0 });

  const fresh = await SmtpDialog.open(mta.smtpPort);
  const greeting = await fresh.reply();
  expect([greeting.code, greeting.lines[0].slice(4, 9)]).toEqual([421, '4.3.2']);
  const next = await open.command('MAIL FROM:<a@example.test>');
  expect([next.code, next.lines[0].slice(4, 9)]).toEqual([421, '4.3.2']);
  await waitUntil(() => open.closed);

  expect((await httpSend()).status).toBe(503);
  const ready = await fetch(`${mta.adminUrl}/readyz`);
  expect(ready.status).toBe(503);
  expect(JSON.stringify(await ready.json())).toContain('draining');
  const queue = (await (await fetch(`${mta.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as { workers: { paused: boolean }[] };
  expect(queue.workers.map((w) => w.paused)).toEqual([true, true]);

  expect((await post('/drain/resume')).status).toBe(200);
  expect((await fetch(`${mta.adminUrl}/readyz`)).status).toBe(200);
  expect((await httpSend()).status).toBe(200);
  const again = await SmtpDialog.open(mta.smtpPort);
  expect((await again.reply()).code).toBe(220);
  again.destroy();
});

test('drain stop on a node with a paused domain: its waiting jobs are given back, not counted in flight (the drain would wait for them forever); the mail stays queued', async () => {
  expect((await post('/queue/pause?domain=held.test')).status).toBe(200);
  for (let i = 0; i < 4; i++) {
    const r = await fetch(`${mta.httpUrl}/v1/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_TOKEN}` },
      body: JSON.stringify({ messages: [{ from: 'a@example.test', to: [`r${i}@held.test`], subject: 's', text: 'hello' }] }),
    });
    expect(r.status).toBe(200);
  }
  type Q = { workers: { destinations: { key: string; queued: number }[]; byDomain?: Record<string, { queued: number }> }[] };
  const queue = async (): Promise<Q> => (await (await fetch(`${mta.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as Q;
  // All four wait behind the operator's pause as destination jobs.
  let held = 0;
  const poll = setInterval(() => void queue().then((q) => (held = q.workers.flatMap((w) => w.destinations).filter((d) => d.key.endsWith('|held.test')).reduce((n, d) => n + d.queued, 0)), () => undefined), 50);
  try {
    await waitUntil(() => held === 4, 10_000, () => `held ${held}`);
  } finally {
    clearInterval(poll);
  }
  const stop = await post('/drain/stop');
  expect(await stop.json()).toMatchObject({ draining: true, inflight: 0 });
  const q = await queue();
  expect(q.workers.reduce((n, w) => n + (w.byDomain?.['held.test']?.queued ?? 0), 0)).toBe(4);
  expect((await post('/drain/resume')).status).toBe(200);
});

test('the drain endpoints need the admin token', async () => {
  expect((await fetch(`${mta.adminUrl}/drain/stop`, { method: 'POST' })).status).toBe(401);
  expect((await fetch(`${mta.adminUrl}/node/stop`, { method: 'POST' })).status).toBe(401);
});

test('node stop stops the MTA as SIGTERM does', async () => {
  const r = await post('/node/stop');
  expect(r.status).toBe(202);
  await waitUntil(() => mta.proc.exitCode !== null, 30_000);
  expect(mta.proc.exitCode).toBe(0);
});
