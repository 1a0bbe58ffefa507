// A planned switchover with real processes on loopback: smtp-source loads
// node A's MTA, which delivers to smtp-sink slowly (a queue builds up); in
// the middle of the load `volley mirror switchover` runs on A: intake stops,
// the secondary is waited for, A's MTA stops, B takes the arbiter lease and
// becomes the primary of epoch 2 (its promote_command runs), and an MTA
// started on B's persistent path delivers the rest. Every message
// smtp-source saw a 250 for is delivered exactly once, from one node or the
// other; nothing is delivered twice.
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_AUTH, ADMIN_TOKEN, testConfigYaml } from '../../helpers/config';
import { mirrorCli, startMirror, type MirrorProcess } from '../../helpers/mirror-process';
import { startMta, type MtaProcess } from '../../helpers/mta-process';
import { getFreePort, SMTP_SOURCE_BIN, startSmtpSink, type SmtpSinkHandle } from '../../helpers/postfix-tools';
import { childrenByParent, commandLine } from '../../helpers/procs';
import { newSecret, proxyTls, waitUntil } from '../../helpers/proxy-fixtures';
import { smtpSourceWithAcks, type SourceTally } from '../../helpers/smtp-source-acks';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir('volley-mirror-switchover-');
const mtas: MtaProcess[] = [];
const mirrors: MirrorProcess[] = [];
const sinks: SmtpSinkHandle[] = [];

afterAll(async () => {
  for (const m of mtas) await m.crash();
  for (const m of mirrors) await m.crash();
  for (const s of sinks) await s.stop();
});

async function status(admin: string): Promise<Record<string, unknown>> {
  return (await (await fetch(`http://${admin}/status`)).json()) as Record<string, unknown>;
}

async function until(admin: string, check: (s: Record<string, unknown>) => boolean, what: string): Promise<void> {
  let last: Record<string, unknown> | undefined;
  let ok = false;
  let done = false;
  const loop = (async () => {
    while (!done && !ok) {
      last = await status(admin).catch(() => last);
      ok = last !== undefined && check(last);
      if (!ok) await new Promise((r) => setTimeout(r, 100));
    }
  })();
  try {
    await waitUntil(() => ok, 60_000, () => `${what}: ${JSON.stringify(last)}\n${mirrors.map((m) => m.log().slice(-3000)).join('\n---\n')}`);
  } finally {
    done = true;
    await loop;
  }
}

/** Recipient -> copies the sink holds. */
function copies(dumpDir: string): Map<string, number> {
  const seen = new Map<string, number>();
  for (const f of readdirSync(dumpDir)) {
    const rcpt = /\tfor <([^>]+)>/.exec(readFileSync(join(dumpDir, f), 'latin1'))?.[1];
    if (rcpt) seen.set(rcpt, (seen.get(rcpt) ?? 0) + 1);
  }
  return seen;
}

/** This process's smtp-source children still running. */
function smtpSources(): number[] {
  return (childrenByParent().get(process.pid) ?? []).filter((pid) => {
    try {
      return commandLine(pid)[0] === SMTP_SOURCE_BIN;
    } catch {
      return false;
    }
  });
}

test('planned switchover under load: intake stops, the secondary catches the head, roles swap, and every acknowledged message is delivered exactly once', async () => {
  const tls = await proxyTls(dir);
  writeFileSync(join(dir, 'mirror.secret'), newSecret());
  writeFileSync(join(dir, 'admin.token'), `${ADMIN_TOKEN}\n`);
  const ppA = join(dir, 'node-a');
  const ppB = join(dir, 'node-b');
  const arbiterDir = join(dir, 'arbiter');
  for (const d of [ppA, ppB, arbiterDir]) mkdirSync(d);
  const promotedFlag = join(dir, 'b-promoted');
  const portsA = { smtp: await getFreePort(), http: await getFreePort(), admin: await getFreePort() };
  const port = { a: await getFreePort(), b: await getFreePort(), adminA: await getFreePort(), adminB: await getFreePort() };
  const adminA = `127.0.0.1:${port.adminA}`;
  const adminB = `127.0.0.1:${port.adminB}`;
  const yaml = (name: string, pp: string, self: number, peer: number, admin: string, extra: string): string => {
    const file = join(dir, `${name}-mirror.yaml`);
    writeFileSync(
      file,
      `name: ${name}\npersistent_path: ${pp}\nlisten: 127.0.0.1:${self}\npeer: 127.0.0.1:${peer}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\npeer_fingerprint: "${tls.fingerprint}"\nsecret_file: mirror.secret\nadmin_listen: ${admin}\npoll_interval: 20ms\nreconnect_interval: 100ms\nlease_ttl: 5s\narbiter: { file: ${join(arbiterDir, 'lease.json')} }\nmta_admin_token_file: admin.token\n${extra}`,
    );
    return file;
  };
  const cfgA = yaml('a', ppA, port.a, port.b, adminA, `mta_admin: 127.0.0.1:${portsA.admin}\n`);
  const cfgB = yaml('b', ppB, port.b, port.a, adminB, `promote_command: [touch, ${promotedFlag}]\n`);

  // A slow receiver (200 ms a message, 4 at a time): the queue is still full when the switchover comes.
  const dumpDir = join(dir, 'sink');
  chmodSync(dir, 0o755); // smtp-sink writes its dumps as nobody
  const sink = await startSmtpSink({ dumpDir, holdMs: 200, maxConnections: 100 });
  sinks.push(sink);
  writeFileSync(join(dir, 'mta.yaml'), testConfigYaml({ sinkPort: sink.port, relayFrom: ['127.0.0.0/8'], concurrency: 4 }));
  const mtaA = await startMta({ configPath: join(dir, 'mta.yaml'), persistentPath: ppA, workers: 2, ports: portsA });
  mtas.push(mtaA);
  let aExit: number | null | undefined;
  mtaA.proc.once('exit', (code) => (aExit = code));
  const mirrorA = await startMirror(cfgA, adminA);
  mirrors.push(mirrorA);
  expect((await mirrorCli(['promote', '--force', '--admin', adminA])).code).toBe(0);
  const mirrorB = await startMirror(cfgB, adminB);
  mirrors.push(mirrorB);
  await until(adminB, (s) => s.caught_up === true, 'B caught up');

  // The switchover on B (the secondary) is refused: it runs on the primary.
  const wrong = await mirrorCli(['switchover', '--admin', adminB]);
  expect(wrong.code).toBe(1);
  expect(wrong.stderr).toContain('ENOTPRIMARY');

  const tally: SourceTally = { acked: [], errors: [], restarts: 0 };
  let switched: Promise<{ status: number; body: { epoch?: number; steps?: string[]; error?: string } }> | undefined;
  let deliveredBefore = -1;
  const load = smtpSourceWithAcks({
    port: mtaA.smtpPort,
    sessions: 4,
    messages: 800,
    domain: 'switch.test',
    tally,
    onAck: (n) => {
      if (n !== 150) return;
      deliveredBefore = copies(dumpDir).size;
      // Straight to the admin port (what the CLI calls), so the load is still running when intake stops.
      switched = fetch(`http://${adminA}/switchover`, { method: 'POST' }).then(async (r) => ({ status: r.status, body: (await r.json()) as { epoch?: number; steps?: string[] } }));
    },
  }).catch((err: Error) => err);
  await waitUntil(() => switched !== undefined, 120_000, () => `${tally.acked.length} acknowledged so far`);
  const result = await switched!;
  expect(result).toMatchObject({ status: 200, body: { epoch: 2 } });
  await waitUntil(() => aExit !== undefined, 60_000, () => 'node A\'s MTA still running after the switchover');
  expect(aExit).toBe(0);
  await load;
  await waitUntil(() => smtpSources().length === 0, 60_000, () => `smtp-source still running: ${smtpSources().join(' ')}`);

  expect(await status(adminB)).toMatchObject({ role: 'primary', epoch: 2, lease: { holder: 'b', epoch: 2 } });
  await until(adminB, (s) => (s.promote_command as { exit?: number } | undefined)?.exit === 0, 'B\'s promote_command');
  expect(existsSync(promotedFlag)).toBe(true);
  await until(adminA, (s) => s.role === 'secondary' && s.epoch === 2, 'A the secondary of epoch 2');
  const acked = tally.acked;
  expect(acked.length).toBeGreaterThanOrEqual(150);
  // Under load: smtp-source was refused (421 once intake stopped, then no MTA) before it had sent everything.
  expect(acked.length).toBeLessThan(800);
  expect(tally.errors.length).toBeGreaterThan(0);
  // The queue that moved was real: B has mail to deliver that A had accepted and not yet delivered.
  const byA = copies(dumpDir).size;
  expect(byA).toBeLessThan(acked.length);
  expect(deliveredBefore).toBeLessThan(150);

  writeFileSync(join(dir, 'mta-b.yaml'), testConfigYaml({ sinkPort: sink.port, relayFrom: ['127.0.0.0/8'] }));
  const mtaB = await startMta({ configPath: join(dir, 'mta-b.yaml'), persistentPath: ppB, workers: 2 });
  mtas.push(mtaB);
  expect((await fetch(`${mtaB.adminUrl}/queue/retry`, { method: 'POST', headers: ADMIN_AUTH })).status).toBe(200);
  await waitUntil(() => acked.every((r) => copies(dumpDir).has(r)), 120_000, () => `${acked.filter((r) => !copies(dumpDir).has(r)).length} of ${acked.length} acknowledged messages not delivered`);
  let queued = -1;
  const poll = setInterval(() => void fetch(`${mtaB.adminUrl}/queue`, { headers: ADMIN_AUTH }).then(async (r) => (queued = ((await r.json()) as { queued: number }).queued), () => undefined), 200);
  try {
    await waitUntil(() => queued === 0, 60_000, () => `${queued} still queued on node B`);
  } finally {
    clearInterval(poll);
  }
  const seen = copies(dumpDir);
  expect(acked.filter((r) => seen.get(r) !== 1)).toEqual([]);
  expect([...seen.entries()].filter(([, n]) => n > 1)).toEqual([]);
  // What it reported, step by step (checked last: the deliveries above are what matters).
  expect(result.body.steps).toEqual([
    'intake and delivery stopped (POST /drain/stop)',
    'the secondary holds the queue durably',
    expect.stringMatching(/^the MTA \(pid [0-9]+\) stopped$/),
    'the secondary holds everything durably',
    'the peer took over as the primary of epoch 2; this node is its secondary',
  ]);
  process.stderr.write(`mirror switchover: ${JSON.stringify({ acked: acked.length, refused: tally.errors.length, deliveredByA: byA, delivered: seen.size })}\n`);
}, 300_000);
