import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ADMIN_AUTH, ADMIN_TOKEN, ALICE_HASH, testConfigYaml } from '../../helpers/config';
import { VOLLEY, startMta, type MtaProcess } from '../../helpers/mta-process';
import { SmtpDialog, message } from '../../helpers/smtp-dialog';
import { authOk as authOkOn } from '../../helpers/smtp-auth';
import { childrenByParent, commandLine } from '../../helpers/procs';
import { tempDir } from '../../helpers/tmp';
import { WORKER_V8_FLAGS } from '../../../runtime/shared/worker-flags';

const run = promisify(execFile);
const dir = tempDir();
const configPath = join(dir, 'volley.yaml');
let mta: MtaProcess;

// bob / builder, same scrypt parameters as alice
const BOB = '  - { name: bob, password: "scrypt$1024$8$1$c2FsdHNhbHRzYWx0MTIzNA==$WY4v7FapwS6R53jzFQqvfm5Oo3BLTf/N7dRERbliMvA=" }';

beforeAll(async () => {
  writeFileSync(configPath, testConfigYaml({ relayFrom: ['127.0.0.1/32'] }));
  mta = await startMta({ configPath, persistentPath: join(dir, 'pp'), workers: 2 });
});
afterAll(() => mta.stop());

const authOk = (user: string, password: string): Promise<boolean> => authOkOn(mta.smtpPort, user, password);

async function refresh(): Promise<{ code: number; out: string }> {
  try {
    const r = await run(process.execPath, [VOLLEY, 'config', 'refresh', '--admin', mta.adminAddress], { env: { ...process.env, VOLLEY_ADMIN_TOKEN: ADMIN_TOKEN } });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

test('a refresh applies new users to every worker without dropping an open session', async () => {
  const open = await SmtpDialog.open(mta.smtpPort);
  await open.reply();
  await open.command('EHLO still-here.test');
  expect(await authOk('bob', 'wonderland')).toBe(false);

  writeFileSync(configPath, testConfigYaml({ relayFrom: ['127.0.0.1/32'], users: `  - { name: alice, password: "${ALICE_HASH}" }\n${BOB}` }));
  const r = await refresh();
  expect(r).toMatchObject({ code: 0, out: 'config refreshed\n' });
  // Each new connection may land on either worker: try several.
  for (let i = 0; i < 6; i++) expect(await authOk('bob', 'wonderland')).toBe(true);

  const tx = await open.transaction('a@example.test', ['b@example.test'], message('across refresh'));
  expect(tx.code).toBe(250);
  await open.quit();
});

test('a broken config is rejected with its line and field, and the running config stays', async () => {
  writeFileSync(configPath, testConfigYaml({ relayFrom: ['127.0.0.1/32'], extra: 'smtp_typo: true\n' }));
  const r = await refresh();
  expect(r.code).toBe(1);
  expect(r.out).toMatch(/refresh rejected, the running config stays/);
  expect(r.out).toMatch(/volley\.yaml:\d+:1: smtp_typo: unknown field "smtp_typo"/);
  for (let i = 0; i < 4; i++) expect(await authOk('bob', 'wonderland')).toBe(true);
  expect((await fetch(`${mta.adminUrl}/readyz`)).status).toBe(200);
});

test('a refresh whose VERP key cannot be used is rejected, naming the file, and the running config stays', async () => {
  const key = join(dir, 'verp.key');
  writeFileSync(key, 'too short\n');
  const verp = `inbound: { domains: [bounces.test.example], verp: { domain: bounces.test.example, secret_file: ${key} } }\n`;
  writeFileSync(configPath, testConfigYaml({ relayFrom: ['127.0.0.1/32'], users: `  - { name: alice, password: "${ALICE_HASH}" }\n${BOB}`, extra: verp }));
  const r = await refresh();
  expect(r.code).toBe(1);
  expect(r.out).toContain(`inbound.verp.secret_file ${key}: 9 bytes, a VERP key needs at least 32`);
  expect((await fetch(`${mta.adminUrl}/readyz`)).status).toBe(200);
  // A good key: accepted.
  writeFileSync(key, 'a-verp-key-of-thirty-two-bytes!!');
  expect(await refresh()).toMatchObject({ code: 0 });
});

test('a refresh whose delivery.tls_ca_file cannot be read is rejected, naming the file, and the running config stays', async () => {
  const ca = join(dir, 'mx-ca.pem');
  writeFileSync(configPath, testConfigYaml({ relayFrom: ['127.0.0.1/32'], users: `  - { name: alice, password: "${ALICE_HASH}" }\n${BOB}` }).replace('delivery:\n', `delivery:\n  tls_ca_file: ${ca}\n`));
  const r = await refresh();
  expect(r.code).toBe(1);
  expect(r.out).toContain(`delivery.tls_ca_file: cannot read ${ca}`);
  expect((await fetch(`${mta.adminUrl}/readyz`)).status).toBe(200);
});

test('a refresh whose smtp.tls, proxies.secret_file or a proxy\'s ca_file cannot be read is rejected, naming the file: a worker restarted later would die at start, again and again', async () => {
  const key = join(dir, 'rotated.key');
  writeFileSync(configPath, testConfigYaml({ relayFrom: ['127.0.0.1/32'], users: `  - { name: alice, password: "${ALICE_HASH}" }\n${BOB}` }).replace('  relay_from:', `  tls: { cert: ${join(dir, 'rotated.crt')}, key: ${key} }\n  relay_from:`));
  let r = await refresh();
  expect(r.code).toBe(1);
  expect(r.out).toContain(`smtp.tls: cannot read TLS files`);
  expect(r.out).toContain(key);
  const secret = join(dir, 'proxy.secret');
  writeFileSync(
    configPath,
    testConfigYaml({ relayFrom: ['127.0.0.1/32'], users: `  - { name: alice, password: "${ALICE_HASH}" }\n${BOB}` }) +
      `proxies:\n  secret_file: ${secret}\n  servers:\n    - { name: proxy-a, address: 127.0.0.1:9, fingerprint: "AB:CD", sending_ips: [127.0.0.1] }\n`,
  );
  r = await refresh();
  expect(r.code).toBe(1);
  expect(r.out).toContain(`proxies.secret_file: cannot read the proxy secret file ${secret}`);
  // The secret there, the proxy's CA file not.
  writeFileSync(secret, 's'.repeat(40));
  const ca = join(dir, 'proxy-ca.pem');
  writeFileSync(
    configPath,
    testConfigYaml({ relayFrom: ['127.0.0.1/32'], users: `  - { name: alice, password: "${ALICE_HASH}" }\n${BOB}` }) +
      `proxies:\n  secret_file: ${secret}\n  servers:\n    - { name: proxy-a, address: 127.0.0.1:9, ca_file: ${ca}, sending_ips: [127.0.0.1] }\n`,
  );
  r = await refresh();
  expect(r.code).toBe(1);
  expect(r.out).toContain(`proxies.servers[0].ca_file: ENOENT: no such file or directory, open '${ca}'`);
  expect((await fetch(`${mta.adminUrl}/readyz`)).status).toBe(200);
});

test('SIGHUP refreshes too', async () => {
  writeFileSync(configPath, testConfigYaml({ relayFrom: ['127.0.0.1/32'] })); // bob removed again
  mta.proc.kill('SIGHUP');
  await new Promise((r) => setTimeout(r, 500));
  for (let i = 0; i < 4; i++) expect(await authOk('bob', 'wonderland')).toBe(false);
  expect(await authOk('alice', 'wonderland')).toBe(true);
});

test('the admin port serves health, readiness, metrics and the queue', async () => {
  expect((await fetch(`${mta.adminUrl}/healthz`)).status).toBe(200);
  const ready = await fetch(`${mta.adminUrl}/readyz`);
  expect(ready.status).toBe(200);
  // No sinks configured: the events detail is there, empty (a sink's state is detail, never a reason).
  expect(await ready.json()).toEqual({ ok: true, reasons: [], events: { sinks: {} } });
  const metrics = await (await fetch(`${mta.adminUrl}/metrics`)).text();
  expect(metrics).toMatch(/^volley_intake_accepted_total\{via="smtp"\} [1-9]/m);
  expect(metrics).toMatch(/^volley_spool_fsync_seconds_bucket/m);
  expect(metrics).toMatch(/^volley_intake_commit_seconds_count [1-9]/m);
  expect(metrics).toMatch(/^volley_spool_messages \d+/m);
  expect(metrics).toMatch(/^volley_spool_records_written [1-9]/m);
  expect(metrics).toMatch(/^volley_intake_rejected_total\{reason="[a-z-]+"\} [1-9]/m);
  const queue = (await (await fetch(`${mta.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as { workers: unknown[] };
  expect(queue.workers).toHaveLength(2);
});

test("every worker runs with the workers' V8 flags; the primary with the node's own", () => {
  const workers = childrenByParent().get(mta.proc.pid!) ?? [];
  expect(workers).toHaveLength(2);
  for (const pid of workers) expect(commandLine(pid)).toEqual(expect.arrayContaining(WORKER_V8_FLAGS));
  expect(commandLine(mta.proc.pid!)).not.toEqual(expect.arrayContaining(WORKER_V8_FLAGS));
});
