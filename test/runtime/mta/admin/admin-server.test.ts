// The MTA admin port's authentication: the queue and config API needs a token
// from admin.tokens; health and metrics stay open for the load balancers,
// also on an address of their own (admin.health_listen).
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ADMIN_AUTH, ADMIN_TOKEN, ADMIN_TOKEN_SHA256, deliveryConfigYaml } from '../../../helpers/config';
import { VOLLEY, startMta, type MtaProcess } from '../../../helpers/mta-process';
import { getFreePort } from '../../../helpers/postfix-tools';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { inject, message } from '../../../helpers/smtp-dialog';
import { tempDir } from '../../../helpers/tmp';

const run = promisify(execFile);
const dir = tempDir();
let mta: MtaProcess;
let healthPort: number;

beforeAll(async () => {
  healthPort = await getFreePort();
  const config = join(dir, 'volley.yaml');
  // Nothing listens on port 9: were the paused mail ever tried, it would be deferred, still queued.
  writeFileSync(config, deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: 9 }]\ndelivery: { retry: [1h] }\nadmin: { tokens: [{ name: ops, sha256: ${ADMIN_TOKEN_SHA256} }], health_listen: { address: 127.0.0.1, port: ${healthPort} } }\n`).replace(/^admin: .*\n/m, ''));
  mta = await startMta({ configPath: config, persistentPath: join(dir, 'pp'), workers: 2 });
});
afterAll(async () => {
  await mta?.stop();
});

const queued = async (): Promise<number> => ((await (await fetch(`${mta.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as { queued: number }).queued;

test('without the token a purge is 401 and purges nothing; with it, it purges and is logged with who made it', async () => {
  expect((await fetch(`${mta.adminUrl}/queue/pause?domain=paused.test`, { method: 'POST', headers: ADMIN_AUTH })).status).toBe(200);
  await inject(mta.smtpPort, 'a@shop.example', ['x@paused.test'], message('held'));
  await inject(mta.smtpPort, 'a@shop.example', ['y@paused.test'], message('held'));
  expect(await queued()).toBe(2);

  for (const headers of [{}, { authorization: 'Bearer wrong-token' }, { authorization: ADMIN_TOKEN }]) {
    const res = await fetch(`${mta.adminUrl}/queue/purge?domain=paused.test`, { method: 'POST', headers });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
    expect(await res.json()).toMatchObject({ code: 'EUNAUTHORIZED' });
  }
  expect((await fetch(`${mta.adminUrl}/queue`)).status).toBe(401);
  expect((await fetch(`${mta.adminUrl}/config/refresh`, { method: 'POST' })).status).toBe(401);
  const cli = await run(process.execPath, [VOLLEY, 'queue', 'purge', '--domain', 'paused.test', '--admin', mta.adminAddress], { env: { ...process.env, VOLLEY_ADMIN_TOKEN: '' } }).catch((e: { code: number; stdout: string }) => e);
  expect(cli).toMatchObject({ code: 1, stdout: expect.stringMatching(/EUNAUTHORIZED/) });
  expect(await queued()).toBe(2);
  expect(mta.log()).toMatch(/"from":"127\.0\.0\.1".*"msg":"admin: refused a call without a valid token"/);

  // The CLI with a token file: the paused mail goes, with one line saying who purged it.
  const tokenFile = join(dir, 'admin-token');
  writeFileSync(tokenFile, `${ADMIN_TOKEN}\n`);
  const ok = await run(process.execPath, [VOLLEY, 'queue', 'purge', '--domain', 'paused.test', '--admin', mta.adminAddress, '--token-file', tokenFile]);
  expect((JSON.parse(ok.stdout) as { workers: { purged: number }[] }).workers.reduce((n, w) => n + w.purged, 0)).toBe(2);
  expect(await queued()).toBe(0);
  await waitUntil(() => /"token":"ops","from":"127\.0\.0\.1".*"msg":"admin: queue purge"/.test(mta.log()), 5000, () => mta.log().slice(-2000));
});

test('a token sent in the query string is refused and not written to the log: the refusal names the path alone', async () => {
  const secret = 'query-string-secret-0123';
  const res = await fetch(`${mta.adminUrl}/queue/purge?domain=paused.test&access_token=${secret}`, { method: 'POST' });
  expect(res.status).toBe(401);
  const refused = (): string[] => mta.log().split('\n').filter((l) => l.includes('admin: refused a call without a valid token') && l.includes('"method":"POST"') && l.includes('/queue/purge'));
  await waitUntil(() => refused().length > 0, 5000, () => mta.log().slice(-2000));
  expect(refused()[0]).toMatch(/"path":"\/queue\/purge"/);
  expect(mta.log()).not.toContain(secret);
});

test('/healthz, /readyz and /metrics answer without a token, on the admin port and on admin.health_listen, which serves nothing else', async () => {
  for (const base of [mta.adminUrl, `http://127.0.0.1:${healthPort}`]) {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
  }
  const res = await fetch(`http://127.0.0.1:${healthPort}/queue/purge?domain=paused.test`, { method: 'POST', headers: ADMIN_AUTH });
  expect(res.status).toBe(404);
  expect((await fetch(`http://127.0.0.1:${healthPort}/queue`, { headers: ADMIN_AUTH })).status).toBe(404);
});

test('a config with no admin.tokens closes the API and says so', async () => {
  const config = join(dir, 'closed.yaml');
  writeFileSync(config, deliveryConfigYaml('routes: [{ domain: "*", host: 127.0.0.1, port: 9 }]\n').replace(/^admin: .*\n/m, ''));
  const closed = await startMta({ configPath: config, persistentPath: join(dir, 'pp-closed'), workers: 1 });
  try {
    expect((await fetch(`${closed.adminUrl}/readyz`)).status).toBe(200);
    const res = await fetch(`${closed.adminUrl}/queue`, { headers: ADMIN_AUTH });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: string }).error).toMatch(/no admin\.tokens are configured/);
  } finally {
    await closed.stop();
  }
});

test('the event queue in the primary: /events/status and /events/replay need the token; /readyz and /metrics carry the events detail', async () => {
  expect((await fetch(`${mta.adminUrl}/events/status`)).status).toBe(401);
  expect((await fetch(`${mta.adminUrl}/events/replay`, { method: 'POST', body: '{}' })).status).toBe(401);
  const cli = await run(process.execPath, [VOLLEY, 'events', 'status', '--json', '--admin', mta.adminAddress], { env: { ...process.env, VOLLEY_ADMIN_TOKEN: ADMIN_TOKEN } });
  expect(JSON.parse(cli.stdout)).toMatchObject({ node: expect.any(String), sinks: [] });
  const replay = await fetch(`${mta.adminUrl}/events/replay`, { method: 'POST', headers: ADMIN_AUTH, body: JSON.stringify({ sink: 'hook', from: '1h' }) });
  expect(replay.status).toBe(404);
  expect(await replay.json()).toMatchObject({ code: 'ENOSINK' });
  expect(await (await fetch(`${mta.adminUrl}/readyz`)).json()).toMatchObject({ ok: true, events: { sinks: {} } });
  expect(await (await fetch(`${mta.adminUrl}/metrics`)).text()).toMatch(/# TYPE volley_events_skipped_total counter/);
});
