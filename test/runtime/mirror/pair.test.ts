// The HA mirror with real processes on loopback: an MTA taking mail from
// smtp-source on the primary's persistent path, a second persistent path for
// the secondary, two `volley mirror` daemons between them. Checks that every
// replicated file is byte-identical once the primary reports no lag, that a
// secondary that was down (and whose copy diverged or lost a file) catches
// up byte-identical, and an unplanned failover: SIGKILL the primary's MTA
// and mirror, promote the secondary, start an MTA on its path and see every
// acknowledged message delivered from there exactly once; then the old
// primary returns, is demoted by the higher epoch (its MTA stopped) and
// catches up as the new secondary. And the async drill: both of the
// primary's daemons killed under load, what async promises (every message
// acknowledged before the primary's last published durable position) checked
// and what it does not (the rest) counted.
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_AUTH, testConfigYaml } from '../../helpers/config';
import { mirrorCli, startMirror, type MirrorProcess } from '../../helpers/mirror-process';
import { startMta, type MtaProcess } from '../../helpers/mta-process';
import { copies, smtpSources, sums, untilBoth } from '../../helpers/mirror-pair';
import { getFreePort, startSmtpSink, type SmtpSinkHandle } from '../../helpers/postfix-tools';
import { newSecret, proxyTls, waitUntil } from '../../helpers/proxy-fixtures';
import { smtpSourceWithAcks, type SourceTally } from '../../helpers/smtp-source-acks';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir('volley-mirror-pair-');
const mtas: MtaProcess[] = [];
const mirrors: MirrorProcess[] = [];
const sinks: SmtpSinkHandle[] = [];

afterAll(async () => {
  for (const m of mtas) await m.crash();
  for (const m of mirrors) await m.crash();
  for (const s of sinks) await s.stop();
});

async function status(admin: string): Promise<Record<string, unknown>> {
  const r = await mirrorCli(['status', '--json', '--admin', admin]);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

const until = (check: (p: Record<string, unknown>, s: Record<string, unknown>) => boolean, a: string, b: string, what: string): Promise<unknown> => untilBoth(mirrors, check, a, b, what);

test('a mirrored pair: byte-identical copies, catch-up after an outage with a diverged and a missing file, and an unplanned failover that delivers every acknowledged message', async () => {
  const tls = await proxyTls(dir);
  writeFileSync(join(dir, 'mirror.secret'), newSecret());
  const ppA = join(dir, 'node-a');
  const ppB = join(dir, 'node-b');
  mkdirSync(ppA);
  mkdirSync(ppB);
  const port = { a: await getFreePort(), b: await getFreePort(), adminA: await getFreePort(), adminB: await getFreePort() };
  const adminA = `127.0.0.1:${port.adminA}`;
  const adminB = `127.0.0.1:${port.adminB}`;
  const mirrorYaml = (pp: string, self: number, peer: number, admin: string): string => {
    const file = join(dir, `${pp.split('/').pop()}-mirror.yaml`);
    writeFileSync(file, `persistent_path: ${pp}\nlisten: 127.0.0.1:${self}\npeer: 127.0.0.1:${peer}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\npeer_fingerprint: "${tls.fingerprint}"\nsecret_file: mirror.secret\nadmin_listen: ${admin}\npoll_interval: 20ms\nreconnect_interval: 100ms\nresync_rate: 20MB\n`);
    return file;
  };
  const cfgA = mirrorYaml(ppA, port.a, port.b, adminA);
  const cfgB = mirrorYaml(ppB, port.b, port.a, adminB);

  // The primary's MTA routes to a port nobody listens on: every delivery defers, so the queue is what fails over.
  const deadPort = await getFreePort();
  writeFileSync(join(dir, 'mta-a.yaml'), testConfigYaml({ sinkPort: deadPort, relayFrom: ['127.0.0.0/8'] }));
  const mtaA = await startMta({ configPath: join(dir, 'mta-a.yaml'), persistentPath: ppA, workers: 2 });
  mtas.push(mtaA);

  // Node A becomes the primary the way an operator makes one: a forced promotion of a lone node.
  const mirrorA = await startMirror(cfgA, adminA);
  mirrors.push(mirrorA);
  expect((await mirrorCli(['promote', '--admin', adminA])).code).toBe(1); // not caught up with anyone: refused
  const forced = await mirrorCli(['promote', '--force', '--admin', adminA]);
  expect(forced.stdout).toContain('primary of epoch 1');
  let mirrorB = await startMirror(cfgB, adminB);
  mirrors.push(mirrorB);

  const first = await smtpSourceWithAcks({ port: mtaA.smtpPort, sessions: 4, messages: 150, domain: 'one.test' });
  // The MTA is still making its first (failing) delivery attempts: files are compared at a moment of no lag between its writes.
  // The sums of the moment they matched are what is checked below: read again, they race the MTA's next write (a run on a loaded machine failed so).
  let matched: { a: Record<string, string>; b: Record<string, string> } = { a: {}, b: {} };
  const identical = (): boolean => {
    const [a, b] = [sums(ppA), sums(ppB)];
    matched = { a, b };
    return Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([f, sum]) => b[f] === sum);
  };
  await until((p, s) => p.lag_bytes === 0 && p.caught_up === true && s.caught_up === true && identical(), adminA, adminB, 'first catch-up');
  expect(matched.b).toEqual(matched.a);
  const segments = Object.keys(sums(ppA)).filter((f) => f.endsWith('.seg'));
  const eventFiles = Object.keys(sums(ppA)).filter((f) => f.startsWith('log/events/') && f.endsWith('.jsonl'));
  expect(segments.length).toBeGreaterThan(0);
  expect(eventFiles.length).toBeGreaterThan(0);
  expect((await fetch(`http://${adminB}/readyz`)).status).toBe(503);
  expect((await fetch(`http://${adminA}/readyz`)).status).toBe(200);

  // The secondary goes down; mail keeps coming; its copy loses a file and one segment's last block diverges.
  await mirrorB.stop();
  const second = await smtpSourceWithAcks({ port: mtaA.smtpPort, sessions: 4, messages: 100, domain: 'two.test' }); // its own domain: smtp-source's recipient numbers start again
  const victim = join(ppB, segments[0]);
  const bytes = readFileSync(victim);
  bytes[bytes.length - 10] ^= 0xff;
  writeFileSync(victim, bytes);
  rmSync(join(ppB, eventFiles[0]));
  mirrorB = await startMirror(cfgB, adminB);
  mirrors.push(mirrorB);
  await until((p, s) => p.lag_bytes === 0 && p.caught_up === true && s.caught_up === true && s.peer_connected === true && identical(), adminA, adminB, 'catch-up after the outage');
  expect(matched.b).toEqual(matched.a);
  expect(Number((await status(adminA)).full_resyncs)).toBeGreaterThanOrEqual(1);

  // Unplanned failover: the primary's MTA and mirror die at once, after the last durable ack.
  const acked = [...first.acked, ...second.acked];
  expect(acked.length).toBe(250);
  await mtaA.crash();
  await mirrorA.crash();
  const promoted = await mirrorCli(['promote', '--admin', adminB]);
  expect(promoted).toMatchObject({ code: 0 });
  expect(promoted.stdout).toContain('primary of epoch 2');
  expect((await fetch(`http://${adminB}/readyz`)).status).toBe(200);

  const dumpDir = join(dir, 'sink');
  chmodSync(dir, 0o755); // smtp-sink writes its dumps as nobody
  const sink = await startSmtpSink({ dumpDir, maxConnections: 100 });
  sinks.push(sink);
  writeFileSync(join(dir, 'mta-b.yaml'), testConfigYaml({ sinkPort: sink.port, relayFrom: ['127.0.0.0/8'] }));
  expect(existsSync(join(ppB, 'mta.lock'))).toBe(false);
  const mtaB = await startMta({ configPath: join(dir, 'mta-b.yaml'), persistentPath: ppB, workers: 2 });
  mtas.push(mtaB);
  // The same node: the mirrored identity.
  expect(readFileSync(join(ppB, 'node-id'), 'utf8')).toBe(readFileSync(join(ppA, 'node-id'), 'utf8'));
  // The queue's retries were set on node A (an hour away): the operator retries them now.
  expect((await fetch(`${mtaB.adminUrl}/queue/retry`, { method: 'POST', headers: ADMIN_AUTH })).status).toBe(200);
  await waitUntil(() => acked.every((r) => copies(dumpDir).has(r)), 120_000, () => `${acked.filter((r) => !copies(dumpDir).has(r)).length} of ${acked.length} acknowledged messages not delivered from node B`);
  const seen = copies(dumpDir);
  expect(new Set(acked).size).toBe(acked.length);
  expect(acked.filter((r) => seen.get(r) !== 1)).toEqual([]);
  expect(seen.size).toBe(acked.length);

  // The old primary comes back: its MTA starts on its own (stale) path, then its
  // mirror, which still believes it is the primary of epoch 1. Node B's epoch 2
  // demotes it at once; it stops its MTA and becomes B's secondary.
  const mtaA2 = await startMta({ configPath: join(dir, 'mta-a.yaml'), persistentPath: ppA, workers: 2 });
  mtas.push(mtaA2);
  const a2Exit = new Promise<number | null>((r) => mtaA2.proc.once('exit', (code) => r(code)));
  const mirrorA2 = await startMirror(cfgA, adminA);
  mirrors.push(mirrorA2);
  expect(await a2Exit).toBe(0); // a graceful stop (SIGTERM), intake and delivery with it
  await until((p, s) => p.role === 'primary' && s.role === 'secondary' && s.epoch === 2 && s.caught_up === true && p.lag_bytes === 0, adminB, adminA, 'the old primary demoted and caught up');
  expect((await fetch(`http://${adminA}/readyz`)).status).toBe(503);
  const human = await mirrorCli(['status', '--admin', adminA]);
  expect(human.stdout).toMatch(/^role\s+secondary$/m);
  expect(human.stdout).toMatch(/^epoch\s+2$/m);
  // Byte-identical to the new primary (whose MTA is idle now: everything delivered).
  await until((p) => p.lag_bytes === 0, adminB, adminA, 'no lag');
  expect(sums(ppA)).toEqual(sums(ppB));
}, 300_000);

test('async drill: SIGKILL the primary\'s MTA and mirror under load; every message acknowledged before the last durable position is delivered from the promoted secondary, the rest is counted', async () => {
  const tls = await proxyTls(join(dir, 'drill-tls-dir'));
  writeFileSync(join(dir, 'mirror.secret'), newSecret());
  const ppA = join(dir, 'drill-a');
  const ppB = join(dir, 'drill-b');
  mkdirSync(ppA);
  mkdirSync(ppB);
  const port = { a: await getFreePort(), b: await getFreePort(), adminA: await getFreePort(), adminB: await getFreePort() };
  const adminA = `127.0.0.1:${port.adminA}`;
  const adminB = `127.0.0.1:${port.adminB}`;
  const yaml = (name: string, pp: string, self: number, peer: number, admin: string): string => {
    const file = join(dir, `${name}-mirror.yaml`);
    writeFileSync(file, `persistent_path: ${pp}\nlisten: 127.0.0.1:${self}\npeer: 127.0.0.1:${peer}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\npeer_fingerprint: "${tls.fingerprint}"\nsecret_file: mirror.secret\nadmin_listen: ${admin}\npoll_interval: 20ms\nreconnect_interval: 100ms\n`);
    return file;
  };
  const cfgA = yaml('drill-a', ppA, port.a, port.b, adminA);
  const cfgB = yaml('drill-b', ppB, port.b, port.a, adminB);
  writeFileSync(join(dir, 'drill-mta-a.yaml'), testConfigYaml({ sinkPort: await getFreePort(), relayFrom: ['127.0.0.0/8'] }));
  const mtaA = await startMta({ configPath: join(dir, 'drill-mta-a.yaml'), persistentPath: ppA, workers: 2 });
  mtas.push(mtaA);
  const mirrorA = await startMirror(cfgA, adminA);
  mirrors.push(mirrorA);
  expect((await mirrorCli(['promote', '--force', '--admin', adminA])).code).toBe(0);
  const mirrorB = await startMirror(cfgB, adminB);
  mirrors.push(mirrorB);
  await until((p, s) => p.caught_up === true && s.caught_up === true, adminA, adminB, 'caught up before the load');

  // The last durable position the primary published before it died (what an operator's monitoring would have seen).
  let durable = 0;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const s = (await fetch(`http://${adminA}/status`).then((r) => r.json(), () => undefined)) as { durable_through?: string } | undefined;
      if (s?.durable_through) durable = Math.max(durable, Date.parse(s.durable_through));
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const tally: SourceTally = { acked: [], errors: [], restarts: 0 };
  const ackedAt = new Map<string, number>();
  let killed: Promise<void> | undefined;
  const load = smtpSourceWithAcks({
    port: mtaA.smtpPort,
    sessions: 4,
    messages: 600,
    domain: 'drill.test',
    tally,
    onAck: (n) => {
      ackedAt.set(tally.acked[n - 1], Date.now());
      if (n !== 200) return;
      // The mirror first: what node A accepts after that is on its volume only (lost with it, counted).
      killed = (async () => {
        await mirrorA.crash();
        polling = false;
        await mtaA.crash();
      })();
    },
  }).catch((err: Error) => err);
  await waitUntil(() => killed !== undefined, 120_000, () => `${tally.acked.length} acknowledged so far`);
  await killed;
  await poller;
  await load;
  // The load's other sessions give up on their own (smtp-source exits on a refused connection): none may outlive the test.
  await waitUntil(() => smtpSources().length === 0, 60_000, () => `smtp-source still running: ${smtpSources().join(' ')}`);
  const must = tally.acked.filter((r) => ackedAt.get(r)! < durable);
  expect(must.length).toBeGreaterThanOrEqual(50); // teeth: a good part of the load was acknowledged before that point

  const promoted = await mirrorCli(['promote', '--admin', adminB]);
  expect(promoted).toMatchObject({ code: 0 });
  const dumpDir = join(dir, 'drill-sink');
  chmodSync(dir, 0o755);
  const sink = await startSmtpSink({ dumpDir, maxConnections: 100 });
  sinks.push(sink);
  writeFileSync(join(dir, 'drill-mta-b.yaml'), testConfigYaml({ sinkPort: sink.port, relayFrom: ['127.0.0.0/8'] }));
  const mtaB = await startMta({ configPath: join(dir, 'drill-mta-b.yaml'), persistentPath: ppB, workers: 2 });
  mtas.push(mtaB);
  expect((await fetch(`${mtaB.adminUrl}/queue/retry`, { method: 'POST', headers: ADMIN_AUTH })).status).toBe(200);
  await waitUntil(() => must.every((r) => copies(dumpDir).has(r)), 120_000, () => `${must.filter((r) => !copies(dumpDir).has(r)).length} of ${must.length} messages acknowledged before the last durable position not delivered`);
  let queued = -1;
  const poll = setInterval(() => void fetch(`${mtaB.adminUrl}/queue`, { headers: ADMIN_AUTH }).then(async (r) => (queued = ((await r.json()) as { queued: number }).queued), () => undefined), 200);
  try {
    await waitUntil(() => queued === 0, 60_000, () => `${queued} still queued on node B`);
  } finally {
    clearInterval(poll);
  }
  const seen = copies(dumpDir);
  const lost = tally.acked.filter((r) => !seen.has(r));
  const unacked = [...seen.keys()].filter((r) => !ackedAt.has(r));
  // Counted: acknowledged, of which durable on B before the kill, what the lag held at the kill (acknowledged after the last
  // published durable position), lost with node A, delivered but never acknowledged (in flight at the kill).
  const lagHeld = tally.acked.length - must.length;
  const counts = { acked: tally.acked.length, must: must.length, lagHeld, lost: lost.length, inFlightDelivered: unacked.length };
  expect(lost.filter((r) => ackedAt.get(r)! < durable)).toEqual([]);
  // Compared: async loses at most what the measured lag held.
  expect(counts.lost).toBeLessThanOrEqual(counts.lagHeld);
  expect(counts.acked - counts.lost).toBeGreaterThanOrEqual(counts.must);
  expect([...seen.values()].filter((n) => n > 1)).toEqual([]); // nothing twice
  process.stderr.write(`mirror async drill: ${JSON.stringify(counts)}\n`);
}, 300_000);
