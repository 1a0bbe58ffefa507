// The MTA's primary process: what it gives the workers it (re)starts, and the
// signals it must survive while it starts.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readdirSync, readlinkSync, renameSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { ALICE_HASH, deliveryConfigYaml, testConfigYaml, writeTestConfig } from '../../helpers/config';
import { startMta, type MtaProcess } from '../../helpers/mta-process';
import { childrenByParent } from '../../helpers/procs';
import { waitUntil } from '../../helpers/proxy-fixtures';
import { SmtpDialog, message } from '../../helpers/smtp-dialog';
import { authOk } from '../../helpers/smtp-auth';
import { tempDir } from '../../helpers/tmp';
import { serviceSpec, readUnitFile } from '../../rehearsal/unit-file';
import { exitCause, restartsOnExit } from '../../rehearsal/unit-runner';

const dir = tempDir();
let mta: MtaProcess | undefined;
afterEach(async () => {
  await mta?.stop();
  mta = undefined;
});

const workerPids = (primary: number): number[] => childrenByParent().get(primary) ?? [];
const count = (text: string, what: RegExp): number => text.match(new RegExp(what, 'g'))?.length ?? 0;

// bob, with alice's password (wonderland)
const BOB = '  - { name: bob, password: "scrypt$1024$8$1$c2FsdHNhbHRzYWx0MTIzNA==$WY4v7FapwS6R53jzFQqvfm5Oo3BLTf/N7dRERbliMvA=" }';


test('a worker restarted while the config file is broken runs the config the primary validated', async () => {
  const configPath = writeTestConfig(dir, { relayFrom: ['127.0.0.0/8'] });
  mta = await startMta({ configPath, persistentPath: join(dir, 'pp'), workers: 2 });
  const m = mta;
  const before = workerPids(m.proc.pid!);
  expect(before).toHaveLength(2);

  writeFileSync(configPath, 'hostname: [this is not a hostname\n'); // not even YAML
  process.kill(before[0], 'SIGKILL');

  // Back once: a new worker, the node ready again ("mta ready" a second time).
  await waitUntil(() => count(m.log(), /"msg":"mta ready"/) >= 2, 30_000, () => m.log().slice(-2000));
  const after = workerPids(m.proc.pid!);
  expect(after).toHaveLength(2);
  expect(after).not.toContain(before[0]);
  expect(count(m.log(), /worker died; restarting it/)).toBe(1); // no crash loop
  expect((await fetch(`${m.adminUrl}/readyz`)).status).toBe(200);

  // Every new connection may land on either worker: both take mail.
  for (let i = 0; i < 8; i++) {
    const s = await SmtpDialog.open(m.smtpPort);
    await s.reply();
    await s.command('EHLO c.test');
    expect((await s.transaction('a@example.test', ['b@example.test'], message(`after restart ${i}`))).code).toBe(250);
    await s.quit();
  }
});

test('a delivery.tls_ca_file that cannot be read stops the start with ETLSCAFILE, before any worker (no crash loop)', async () => {
  const caDir = join(dir, 'bad-ca');
  mkdirSync(caDir);
  const configPath = join(caDir, 'volley.yaml');
  writeFileSync(configPath, deliveryConfigYaml(`delivery: { tls_ca_file: ${join(caDir, 'missing.pem')} }\n`));
  const err = await startMta({ configPath, persistentPath: join(caDir, 'pp'), workers: 1 }).then(
    (m) => ((mta = m), undefined),
    (e: unknown) => e as Error,
  );
  expect(err?.message).toMatch(/^mta exited 1:/);
  expect(err?.message).toContain(`delivery.tls_ca_file: cannot read ${join(caDir, 'missing.pem')}`);
  expect(err?.message).toContain('ETLSCAFILE');
  expect(err?.message).not.toMatch(/worker died/);
});

test('a proxies.secret_file that cannot be read stops the start with ESECRET, before any worker (no crash loop)', async () => {
  const pxDir = join(dir, 'bad-secret');
  mkdirSync(pxDir);
  const configPath = join(pxDir, 'volley.yaml');
  const secret = join(pxDir, 'missing.secret');
  writeFileSync(configPath, testConfigYaml() + `proxies:\n  secret_file: ${secret}\n  servers:\n    - { name: proxy-a, address: 127.0.0.1:9, fingerprint: "AB:CD", sending_ips: [127.0.0.1] }\n`);
  const err = await startMta({ configPath, persistentPath: join(pxDir, 'pp'), workers: 1 }).then(
    (m) => ((mta = m), undefined),
    (e: unknown) => e as Error,
  );
  expect(err?.message).toMatch(/^mta exited 1:/);
  expect(err?.message).toContain(`proxies.secret_file: cannot read the proxy secret file ${secret}`);
  expect(err?.message).toContain('ESECRET');
  expect(err?.message).not.toMatch(/worker died/);
});

test('a stop that comes while a worker is starting stops that worker gracefully too, not by the 30 s deadline\'s SIGKILL', async () => {
  mkdirSync(join(dir, 'starting'));
  const configPath = writeTestConfig(join(dir, 'starting'), { relayFrom: ['127.0.0.0/8'] });
  mta = await startMta({ configPath, persistentPath: join(dir, 'starting', 'pp'), workers: 2 });
  const m = mta;
  const first = workerPids(m.proc.pid!);
  expect(first).toHaveLength(2);
  process.kill(first[0], 'SIGKILL');
  // Its replacement is forked half a second later; the primary's SIGTERM comes while it is still starting.
  let fresh: number | undefined;
  await waitUntil(() => (fresh = workerPids(m.proc.pid!).find((p) => !first.includes(p))) !== undefined, 30_000, () => m.log().slice(-2000));
  await m.stop();
  mta = undefined;
  // It heard the stop and stopped as a worker stops: listeners closed, deliveries finished (not cut off by SIGKILL).
  expect(m.log()).toMatch(new RegExp(`"pid":${fresh},[^\\n]*"msg":"worker stopping: closing listeners`));
});

/** The pids, other than this test's, that hold `path` open (from /proc/<pid>/fd). */
function holdersOf(path: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readdirSync(`/proc/${pid}/fd`).some((fd) => readlinkSafe(`/proc/${pid}/fd/${fd}`) === path)) found.push(pid);
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}
function readlinkSafe(link: string): string | undefined {
  try {
    return readlinkSync(link);
  } catch {
    return undefined;
  }
}

// volley config sync reloads through the unit's ExecReload (SIGHUP) as soon as the unit is active, which systemd
// says of a Type=simple unit from its exec on. A primary still starting died of it (SIGHUP's default action), and
// systemd counts a main process killed by SIGHUP as a clean exit: Restart=on-failure left the node down.
test('a SIGHUP while the primary is still starting is kept: the node comes up and the refresh it asked for runs', async () => {
  const hupDir = join(dir, 'hangup');
  mkdirSync(hupDir);
  // The primary reads the DKIM key during its start: a FIFO holds it there until this test has signalled it.
  const keyFile = join(hupDir, 'dkim.pem');
  execFileSync('mkfifo', [keyFile]);
  const key = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const dkim = `dkim:\n  - { domain: example.test, selector: s1, algorithm: ed25519-sha256, private_key_file: ${keyFile} }\n`;
  const configPath = join(hupDir, 'volley.yaml');
  writeFileSync(configPath, testConfigYaml({ relayFrom: ['127.0.0.0/8'], extra: dkim }));
  const starting = startMta({ configPath, persistentPath: join(hupDir, 'pp'), workers: 1 }).then((m) => (mta = m));

  // Opening a FIFO for writing returns once a reader has it open: the primary is inside its start.
  const writer = await open(keyFile, 'w');
  try {
    const readers = holdersOf(keyFile);
    expect(readers).toHaveLength(1);
    // What the sync does on a deploy: install the new file, then reload.
    writeFileSync(configPath, testConfigYaml({ relayFrom: ['127.0.0.0/8'], extra: dkim, users: `  - { name: alice, password: "${ALICE_HASH}" }\n${BOB}` }));
    process.kill(readers[0] as number, 'SIGHUP');
    await writer.writeFile(key);
    // The worker reads the key file too, after the primary: a plain file by then.
    writeFileSync(`${keyFile}.plain`, key);
    renameSync(`${keyFile}.plain`, keyFile);
  } finally {
    await writer.close();
  }
  const m = await starting;
  await waitUntil(() => /"msg":"config refreshed"/.test(m.log()), 30_000, () => m.log().slice(-2000));
  expect(await authOk(m.smtpPort, 'bob', 'wonderland')).toBe(true);
}, 90_000);

// A refresh while a worker is still starting: past its config-request, before its own 'message' listener, so a
// config sent then is dropped. It was sent anyway and counted as given, so the worker's 'ready' sent nothing and
// it ran the old config for good (here: bob, added by the refresh, refused).
test('a SIGHUP while a worker is still starting reaches that worker: it gets the new config once ready', async () => {
  const hupDir = join(dir, 'hangup-worker');
  mkdirSync(hupDir);
  // Both the primary and then the worker read the DKIM key as they start: a FIFO holds each there in turn.
  const keyFile = join(hupDir, 'dkim.pem');
  execFileSync('mkfifo', [keyFile]);
  const key = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const plainKey = join(hupDir, 'dkim-plain.pem');
  writeFileSync(plainKey, key);
  const dkim = (file: string) => `dkim:\n  - { domain: example.test, selector: s1, algorithm: ed25519-sha256, private_key_file: ${file} }\n`;
  const configPath = join(hupDir, 'volley.yaml');
  writeFileSync(configPath, testConfigYaml({ relayFrom: ['127.0.0.0/8'], extra: dkim(keyFile) }));
  let log = (): string => '';
  const starting = startMta({ configPath, persistentPath: join(hupDir, 'pp'), workers: 1, whileStarting: (l) => (log = l) }).then((m) => (mta = m));

  const forPrimary = await open(keyFile, 'w');
  const primary = holdersOf(keyFile);
  try {
    expect(primary).toHaveLength(1);
    await forPrimary.writeFile(key);
  } finally {
    await forPrimary.close();
  }
  // Once the primary has closed it, the next reader of the FIFO can only be the worker.
  await waitUntil(() => !holdersOf(keyFile).includes(primary[0] as number), 30_000);
  const forWorker = await open(keyFile, 'w');
  try {
    // The worker, forked once the primary could refresh, holds the FIFO: it is past its config-request.
    const worker = holdersOf(keyFile);
    expect(worker).toHaveLength(1);
    expect(worker[0]).not.toBe(primary[0]);
    // A deploy's config sync: the new file (bob added, the key from a plain file), then the reload.
    writeFileSync(configPath, testConfigYaml({ relayFrom: ['127.0.0.0/8'], extra: dkim(plainKey), users: `  - { name: alice, password: "${ALICE_HASH}" }\n${BOB}` }));
    process.kill(primary[0] as number, 'SIGHUP');
    await waitUntil(() => /"msg":"config refreshed"/.test(log()), 30_000, () => log().slice(-2000));
    await forWorker.writeFile(key);
  } finally {
    await forWorker.close();
  }
  const m = await starting;
  expect(await authOk(m.smtpPort, 'bob', 'wonderland')).toBe(true);
}, 90_000);

// The first half second after exec, node loads the bundle and no SIGHUP listener exists yet: a reload then
// (volley config sync, as soon as systemd calls the Type=simple unit active) kills the primary, and systemd counts
// death by SIGHUP as clean, so Restart=on-failure alone left the node down. The shipped unit restarts it.
test('the shipped unit restarts a primary killed by SIGHUP before it listens for one', () => {
  const shipped = serviceSpec(readUnitFile(join(__dirname, '..', '..', '..', 'assets', 'systemd', 'volley-mta.service')));
  expect(exitCause(shipped, null, 'SIGHUP')).toBe('clean');
  expect(restartsOnExit(shipped, null, 'SIGHUP')).toBe(true);
  // And nothing else changes: a SIGTERM death (a stop's) is still clean and not restarted.
  expect(restartsOnExit(shipped, null, 'SIGTERM')).toBe(false);
});
