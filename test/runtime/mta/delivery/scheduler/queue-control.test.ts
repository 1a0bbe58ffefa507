import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ADMIN_AUTH, ADMIN_TOKEN, deliveryConfigYaml } from '../../../../helpers/config';
import { VOLLEY, startMta, type MtaProcess } from '../../../../helpers/mta-process';
import { ScriptedMx } from '../../../../helpers/scripted-mx';
import { inject, message } from '../../../../helpers/smtp-dialog';
import { tempDir } from '../../../../helpers/tmp';
import { waitUntil } from '../../../../helpers/proxy-fixtures';

const exec = promisify(execFile);
/** The CLI with the admin token in its environment, as an operator runs it. */
const run = (cmd: string, args: string[]) => exec(cmd, args, { env: { ...process.env, VOLLEY_ADMIN_TOKEN: ADMIN_TOKEN } });
const dir = tempDir();
const held = new ScriptedMx({ rcpt: () => [451, '4.3.0 try again later'] });
const ok = new ScriptedMx();
let mta: MtaProcess;
let heldIds: string[] = [];

beforeAll(async () => {
  await held.listen();
  await ok.listen();
  const config = join(dir, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`routes:
  - { domain: held.test, host: 127.0.0.1, port: ${held.port} }
  - { domain: ok.test, host: 127.0.0.1, port: ${ok.port} }
delivery: { retry: [1h] }
`),
  );
  mta = await startMta({ configPath: config, persistentPath: join(dir, 'pp'), workers: 2 });
});
afterAll(async () => {
  await mta?.stop();
  await held.close();
  await ok.close();
});

const send = (to: string): Promise<string> => inject(mta.smtpPort, 'a@shop.example', [to], message('q'));

const admin = async (path: string, method = 'GET'): Promise<Record<string, unknown>> =>
  (await (await fetch(`${mta.adminUrl}${path}`, { method, headers: ADMIN_AUTH })).json()) as Record<string, unknown>;

type Summary = { workers: { byDomain: Record<string, { queued: number; deferred: number }> }[] };
const countFor = (q: Summary, domain: string): number => q.workers.reduce((n, w) => n + (w.byDomain[domain]?.queued ?? 0), 0);

const until = (cond: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> => waitUntil(cond, ms);
const why = async (id: string): Promise<string | undefined> => ((await admin(`/queue/messages/${id}`)).state as { why?: string } | undefined)?.why;

test('counts per domain, a message\'s history and why it is still queued', async () => {
  const ids = [await send('a@held.test'), await send('b@held.test'), await send('c@held.test')];
  heldIds = ids;
  await until(() => held.attempts.size === 3);
  await until(async () => ((await admin(`/queue/messages/${ids[0]}`)).attempts as unknown[]).length === 1);
  const q = (await admin('/queue')) as unknown as Summary;
  expect(countFor(q, 'held.test')).toBe(3);
  const story = await admin(`/queue/messages/${ids[0]}`);
  expect(story).toMatchObject({ queued: true, state: { attempts: 1, pending_recipients: ['a@held.test'] } });
  expect((story.state as { why: string }).why).toMatch(/^waiting for its next retry at /);
  expect(story.attempts).toEqual([expect.objectContaining({ status: 'deferred', smtp_code: 451, attempt: 1 })]);
  const cli = await run(process.execPath, [VOLLEY, 'queue', 'show', '--id', ids[1], '--admin', mta.adminAddress]);
  expect(JSON.parse(cli.stdout)).toMatchObject({ id: ids[1], queued: true });
  expect((await fetch(`${mta.adminUrl}/queue/messages/01NOSUCHMESSAGE0000000000`, { headers: ADMIN_AUTH })).status).toBe(404);
});

test('pause and resume one domain: its mail waits, the rest flows', async () => {
  await admin('/queue/pause?domain=ok.test', 'POST');
  const id = await send('x@ok.test');
  // Queued for its destination and held there by the pause: the engine decided not to send it, not merely had not yet.
  await until(async () => (await why(id)) === 'its destination is paused by an operator');
  expect(ok.messages).toHaveLength(0);
  await admin('/queue/resume?domain=ok.test', 'POST');
  await ok.waitFor(1, 5000);
});

test('retry now sends deferred mail at once; purge removes it with a final event each', async () => {
  await admin('/queue/retry?domain=held.test', 'POST');
  await until(() => [...held.attempts.values()].every((n) => n >= 2));
  const r = await run(process.execPath, [VOLLEY, 'queue', 'purge', '--domain', 'held.test', '--admin', mta.adminAddress]);
  const purged = (JSON.parse(r.stdout) as { workers: { purged: number }[] }).workers.reduce((n, w) => n + w.purged, 0);
  expect(purged).toBe(3);
  expect(countFor((await admin('/queue')) as unknown as Summary, 'held.test')).toBe(0);
  for (const id of heldIds) {
    const story = await admin(`/queue/messages/${id}`);
    expect(story.queued).toBe(false);
    expect((story.attempts as { event: string }[]).at(-1)).toMatchObject({ event: 'purged', message_id: id });
  }
});

test('a purge with no selector is a clear 400 naming the selectors, and purges nothing', async () => {
  const id = await send('nosel@held.test');
  const res = await fetch(`${mta.adminUrl}/queue/purge`, { method: 'POST', headers: ADMIN_AUTH });
  expect(res.status).toBe(400);
  expect(await res.json()).toMatchObject({ code: 'ENOSELECTOR', error: expect.stringMatching(/domain, vmta or id/) });
  const cli = await run(process.execPath, [VOLLEY, 'queue', 'purge', '--admin', mta.adminAddress]).catch((e: { code: number; stdout: string }) => e);
  expect(cli).toMatchObject({ code: 1, stdout: expect.stringMatching(/ENOSELECTOR/) });
  expect((await admin(`/queue/messages/${id}`)).queued).toBe(true);
});
