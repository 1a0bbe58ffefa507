// MTA workers and signals. systemd stops volley-mta.service by sending
// SIGTERM to every process of the unit at once (KillMode=control-group), the
// primary included: the node stops gracefully. A worker that alone gets
// SIGTERM (a stray kill) stops gracefully and the primary restarts it.
// The stop is run through the rehearsal's UnitRunner from the shipped unit file.
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UnitRunner, type UnitStatus } from '../../rehearsal/unit-runner';
import { ADMIN_AUTH, ADMIN_TOKEN_SHA256, testConfigYaml } from '../../helpers/config';
import { startMta, VOLLEY, type MtaProcess } from '../../helpers/mta-process';
import { getFreePort, startSmtpSink, type SmtpSinkHandle } from '../../helpers/postfix-tools';
import { childrenByParent, pidAlive } from '../../helpers/procs';
import { waitUntil } from '../../helpers/proxy-fixtures';
import { SmtpDialog, message } from '../../helpers/smtp-dialog';
import { smtpSourceWithAcks } from '../../helpers/smtp-source-acks';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir();
const SHIPPED_UNIT = join(__dirname, '..', '..', '..', 'assets', 'systemd', 'volley-mta.service');
const UNIT = 'volley-mta.service';

let sink: SmtpSinkHandle | undefined;
let mta: MtaProcess | undefined;
let runner: UnitRunner | undefined;
/** The stop and restart under way; waited for before cleaning up, so a failed test leaves no MTA behind. */
let restarting: Promise<unknown> | undefined;
afterEach(async () => {
  await restarting?.catch(() => undefined);
  restarting = undefined;
  await runner?.close(); // SIGKILL to whatever the unit still runs
  await mta?.stop();
  await sink?.stop();
  mta = sink = runner = undefined;
});


/**
 * The shipped unit, runnable here: `/opt/volley/bin/volley` becomes a wrapper
 * that runs this build (dist/volley.js), the config, persistent path and
 * instance.env paths become the test's. Everything else (ExecStartPre=,
 * KillMode, TimeoutStopSec=, Restart=) is the file's own. Dropped:
 * AssertPathIsMountPoint= (the persistent path here is a plain directory).
 * The ExecStartPre= proxy-link fetch runs for real: the test config has no
 * proxies section, so it needs no Secrets Manager.
 */
function installUnit(root: string, paths: { config: string; persistentPath: string; env: string }): string {
  const units = join(root, 'units');
  mkdirSync(units, { recursive: true });
  const wrapper = join(root, 'volley');
  writeFileSync(wrapper, `#!/bin/sh\nexec ${process.execPath} ${VOLLEY} "$@"\n`, { mode: 0o755 });
  const text = readFileSync(SHIPPED_UNIT, 'utf8')
    .replace(/^AssertPathIsMountPoint=.*\n/m, '')
    .replaceAll('/opt/volley/bin/volley', wrapper)
    .replaceAll('/etc/volley/volley.yaml', paths.config)
    .replaceAll('/etc/volley/instance.env', paths.env)
    .replaceAll('/var/lib/volley', paths.persistentPath);
  writeFileSync(join(units, UNIT), text);
  return units;
}

/** The test config on fixed loopback ports: the unit's ExecStart names none, so they come from the file. */
function unitConfigYaml(sinkPort: number, ports: { smtp: number; http: number; admin: number }): string {
  const yaml = testConfigYaml({ sinkPort, relayFrom: ['127.0.0.0/8'] })
    .replace('{ name: smtp, port: 0,', `{ name: smtp, port: ${ports.smtp},`)
    .replace('http:\n  port: 0', `http:\n  port: ${ports.http}`)
    .replace(`admin: { tokens: [{ name: ops, sha256: ${ADMIN_TOKEN_SHA256} }] }`, `admin: { address: 127.0.0.1, port: ${ports.admin}, tokens: [{ name: ops, sha256: ${ADMIN_TOKEN_SHA256} }] }`);
  if (/port: 0\b/.test(yaml)) throw new Error(`a port was left to the kernel:\n${yaml}`);
  return yaml;
}

/** Polls /readyz until it answers 200 (the unit's start returns once the main process is spawned, as Type=simple does). */
async function ready(adminUrl: string, state: () => string): Promise<void> {
  let ok = false;
  const poll = setInterval(() => void fetch(`${adminUrl}/readyz`).then((r) => (ok = r.ok), () => undefined), 100);
  try {
    await waitUntil(() => ok, 60_000, state);
  } finally {
    clearInterval(poll);
  }
}

/** Copies per recipient in the sink's dumps: smtp-source's -N makes each message's recipient unique, and the MTA names it in Received. */
function copies(dumpDir: string): Map<string, number> {
  const seen = new Map<string, number>();
  for (const f of readdirSync(dumpDir)) {
    const rcpt = /\tfor <([^>]+)>/.exec(readFileSync(join(dumpDir, f), 'latin1'))?.[1];
    if (rcpt) seen.set(rcpt, (seen.get(rcpt) ?? 0) + 1);
  }
  return seen;
}

test('systemctl stop under load, through the unit runner: processes gone within TimeoutStopSec, each acknowledged message delivered exactly once after the start', async () => {
  const dumpDir = join(dir, 'sink');
  chmodSync(dir, 0o755); // smtp-sink writes its dumps as nobody
  // The sink holds each end-of-data reply a second, so deliveries are always in flight when the signal comes.
  // (Through the hold proxy: smtp-sink's own -W .:1 left pipelined final replies unanswered, and the stop waited for them.)
  sink = await startSmtpSink({ holdMs: 1000, holdVia: 'proxy', dumpDir, maxConnections: 1000 });
  const ports = { smtp: await getFreePort(), http: await getFreePort(), admin: await getFreePort() };
  const configPath = join(dir, 'volley.yaml');
  writeFileSync(configPath, unitConfigYaml(sink.port, ports));
  const env = join(dir, 'instance.env');
  writeFileSync(env, 'VOLLEY_NODE_ID=mta-unit-test\nVOLLEY_WORKERS=2\n');
  const units = installUnit(dir, { config: configPath, persistentPath: join(dir, 'pp'), env });
  const r = new UnitRunner({ unitDirs: [units], id: `worker-test-${process.pid}` });
  runner = r;
  const adminUrl = `http://127.0.0.1:${ports.admin}`;
  const journal = (): string => r.journal(UNIT).slice(-2000);
  await r.start(UNIT);
  await ready(adminUrl, journal);

  let stopped: Promise<{ pids: number[]; status: UnitStatus; left: number[] }> | undefined;
  const tally = await smtpSourceWithAcks({
    port: ports.smtp,
    sessions: 8,
    messages: 600,
    domain: 'sink.test',
    onAck: (n) => {
      if (n !== 200) return;
      stopped = (async () => {
        const pids = r.processes(UNIT); // the primary and its two workers
        await r.stop(UNIT); // KillSignal= to every process, SIGKILL only once TimeoutStopSec= runs out
        // The runner's stop returns once no live process is left; the main process (this test's child) is a zombie until Node reaps it and records its exit.
        await waitUntil(() => r.status(UNIT).lastExit !== undefined, 10_000, journal);
        const left = pids.filter(pidAlive);
        const status = r.status(UNIT);
        // Started again, as the next boot would; the load retries meanwhile.
        await r.start(UNIT);
        await ready(adminUrl, journal);
        return { pids, status, left };
      })();
      restarting = stopped;
    },
  });
  const stop = await stopped!;
  expect(stop.pids).toHaveLength(3);
  // Result=success, not timeout: every process went before TimeoutStopSec= and none needed SIGKILL.
  expect(stop.status).toMatchObject({ state: 'inactive', result: 'success', lastExit: { code: 0, signal: null } });
  expect(stop.left).toEqual([]);
  expect(journal()).not.toMatch(/restarting it/); // the unit's stop is the node's stop: no worker came back

  await waitUntil(() => tally.acked.every((rcpt) => copies(dumpDir).has(rcpt)), 150_000, () => `${tally.acked.filter((rcpt) => !copies(dumpDir).has(rcpt)).length} of ${tally.acked.length} acknowledged not delivered`);
  // Nothing left queued that could still arrive as a second copy.
  let queued = -1;
  const poll = setInterval(() => {
    void fetch(`${adminUrl}/queue`, { headers: ADMIN_AUTH }).then(async (res) => (queued = ((await res.json()) as { queued: number }).queued), () => undefined);
  }, 200);
  try {
    await waitUntil(() => queued === 0, 60_000, () => `${queued} still queued`);
  } finally {
    clearInterval(poll);
  }
  const seen = copies(dumpDir);
  expect(tally.acked.length).toBeGreaterThan(400);
  expect(tally.acked.filter((rcpt) => seen.get(rcpt) !== 1)).toEqual([]);
  expect([...seen.values()].filter((n) => n > 1)).toEqual([]); // nothing twice, acknowledged or not
}, 400_000);

test('a worker that alone gets SIGTERM stops gracefully and is restarted: the node stays up and takes mail', async () => {
  const configPath = join(dir, 'one.yaml');
  writeFileSync(configPath, testConfigYaml({ relayFrom: ['127.0.0.0/8'] }));
  mta = await startMta({ configPath, persistentPath: join(dir, 'pp-one'), workers: 2 });
  const m = mta;
  const before = childrenByParent().get(m.proc.pid!) ?? [];
  expect(before).toHaveLength(2);
  process.kill(before[0], 'SIGTERM');
  // Either a new worker is ready ("mta ready" a second time), or the node stops (the bug): whichever comes first.
  const readyCount = (): number => m.log().match(/"msg":"mta ready"/g)?.length ?? 0;
  await waitUntil(() => m.proc.exitCode !== null || readyCount() >= 2, 30_000, () => m.log().slice(-2000));
  expect(m.proc.exitCode).toBeNull();
  expect(m.log()).toMatch(/"signal":"SIGTERM".*worker stopped on a signal of its own; restarting it/);
  expect(pidAlive(before[0])).toBe(false);
  const after = childrenByParent().get(m.proc.pid!) ?? [];
  expect(after).toHaveLength(2);
  expect(after).not.toContain(before[0]);
  expect((await fetch(`${m.adminUrl}/readyz`)).status).toBe(200);
  // Every new connection may land on either worker: both take mail.
  for (let i = 0; i < 8; i++) {
    const s = await SmtpDialog.open(m.smtpPort);
    await s.reply();
    await s.command('EHLO c.test');
    expect((await s.transaction('a@example.test', ['b@example.test'], message(`after the stray SIGTERM ${i}`))).code).toBe(250);
    await s.quit();
  }
  // The primary's own SIGTERM still stops the node, cleanly.
  const exited = new Promise<number | null>((res) => m.proc.once('exit', (code) => res(code)));
  process.kill(m.proc.pid!, 'SIGTERM');
  expect(await exited).toBe(0);
  expect(after.filter(pidAlive)).toEqual([]);
});
