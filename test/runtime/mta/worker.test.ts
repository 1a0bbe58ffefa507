// MTA workers and signals: systemd stops volley-mta.service by sending SIGTERM
// to every process of the unit at once (KillMode=control-group), not only the
// primary; a worker that gets SIGTERM stops gracefully and is not restarted.
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_AUTH, testConfigYaml } from '../../helpers/config';
import { startMta, type MtaProcess } from '../../helpers/mta-process';
import { getFreePort, startSmtpSink, type SmtpSinkHandle } from '../../helpers/postfix-tools';
import { childrenByParent } from '../../helpers/procs';
import { waitUntil } from '../../helpers/proxy-fixtures';
import { smtpSourceWithAcks } from '../../helpers/smtp-source-acks';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir();
const UNIT = join(__dirname, '..', '..', '..', 'assets', 'systemd', 'volley-mta.service');
const timeoutStopSec = Number(/^TimeoutStopSec=(\d+)$/m.exec(readFileSync(UNIT, 'utf8'))![1]);

let sink: SmtpSinkHandle | undefined;
let mta: MtaProcess | undefined;
/** The stop and restart under way; waited for before cleaning up, so a failed test leaves no MTA behind. */
let restarting: Promise<unknown> | undefined;
afterEach(async () => {
  await restarting?.catch(() => undefined);
  restarting = undefined;
  await mta?.stop();
  await sink?.stop();
  mta = sink = undefined;
});

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Sends SIGTERM to the MTA's whole process group (the primary and every worker), as systemd does; resolves with the primary's exit. */
async function systemdStop(m: MtaProcess): Promise<{ code: number | null; ms: number; workers: number[] }> {
  const workers = childrenByParent().get(m.proc.pid!) ?? [];
  const exited = new Promise<number | null>((r) => m.proc.once('exit', (code) => r(code)));
  const t0 = Date.now();
  process.kill(-m.proc.pid!, 'SIGTERM');
  const code = await exited;
  return { code, ms: Date.now() - t0, workers };
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

test('SIGTERM to every process at once under load: each acknowledged message is delivered exactly once after the restart', async () => {
  const dumpDir = join(dir, 'sink');
  chmodSync(dir, 0o755); // smtp-sink writes its dumps as nobody
  // The sink holds each end-of-data reply a second, so deliveries are always in flight when the signal comes.
  // (Through the hold proxy: smtp-sink's own -W .:1 left pipelined final replies unanswered, and the stop waited for them.)
  sink = await startSmtpSink({ holdMs: 1000, holdVia: 'proxy', dumpDir, maxConnections: 1000 });
  const configPath = join(dir, 'volley.yaml');
  writeFileSync(configPath, testConfigYaml({ sinkPort: sink.port, relayFrom: ['127.0.0.0/8'] }));
  const ports = { smtp: await getFreePort(), http: await getFreePort(), admin: await getFreePort() };
  const pp = join(dir, 'pp');
  mta = await startMta({ configPath, persistentPath: pp, workers: 2, ports });

  let stopped: Promise<{ code: number | null; ms: number; workers: number[] }> | undefined;
  const tally = await smtpSourceWithAcks({
    port: ports.smtp,
    sessions: 8,
    messages: 600,
    domain: 'sink.test',
    onAck: (n) => {
      if (n !== 200) return;
      const m = mta!;
      stopped = (async () => {
        const r = await systemdStop(m);
        // Back up on the same ports, as systemd's next start would be; the load retries meanwhile.
        mta = await startMta({ configPath, persistentPath: pp, workers: 2, ports });
        return r;
      })();
      restarting = stopped;
    },
  });
  const stop = await stopped!;
  expect(stop.code).toBe(0);
  expect(stop.ms).toBeLessThan(timeoutStopSec * 1000);
  expect(stop.workers).toHaveLength(2);
  expect(stop.workers.filter(alive)).toEqual([]);

  const m = mta!;
  await waitUntil(() => tally.acked.every((r) => copies(dumpDir).has(r)), 150_000, () => `${tally.acked.filter((r) => !copies(dumpDir).has(r)).length} of ${tally.acked.length} acknowledged not delivered`);
  // Nothing left queued that could still arrive as a second copy.
  let queued = -1;
  const poll = setInterval(() => {
    void fetch(`${m.adminUrl}/queue`, { headers: ADMIN_AUTH }).then(async (r) => (queued = ((await r.json()) as { queued: number }).queued), () => undefined);
  }, 200);
  try {
    await waitUntil(() => queued === 0, 60_000, () => `${queued} still queued`);
  } finally {
    clearInterval(poll);
  }
  const seen = copies(dumpDir);
  expect(tally.acked.length).toBeGreaterThan(400);
  expect(tally.acked.filter((r) => seen.get(r) !== 1)).toEqual([]);
  expect([...seen.values()].filter((n) => n > 1)).toEqual([]); // nothing twice, acknowledged or not
}, 400_000);

test('a worker that gets SIGTERM is not restarted: the node stops gracefully', async () => {
  const configPath = join(dir, 'one.yaml');
  writeFileSync(configPath, testConfigYaml({ relayFrom: ['127.0.0.0/8'] }));
  mta = await startMta({ configPath, persistentPath: join(dir, 'pp-one'), workers: 2 });
  const m = mta;
  const workers = childrenByParent().get(m.proc.pid!) ?? [];
  expect(workers).toHaveLength(2);
  process.kill(workers[0], 'SIGTERM');
  // Either the node stops, or the primary restarts the worker (the bug): whichever comes first.
  await waitUntil(() => m.proc.exitCode !== null || /restarting it/.test(m.log()), 30_000, () => m.log().slice(-2000));
  expect(m.log()).not.toMatch(/restarting it/);
  expect(m.proc.exitCode).toBe(0);
  expect(m.log()).toMatch(/"signal":"SIGTERM to worker 0"/);
  expect(workers.filter(alive)).toEqual([]);
});
