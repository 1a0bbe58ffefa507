// Mode sync with real processes on loopback: two `volley mirror` daemons in
// mode sync, an MTA with `mirror: { mode: sync }` on the primary's path,
// smtp-source or a real SMTP client as the injector, smtp-sink as the
// destination.
//   The sync drill: SIGKILL the primary's MTA and mirror under load, promote
//   the secondary (it needs no --force: it is caught up), start an MTA on it:
//   every message smtp-source saw a 250 for is delivered from there, and the
//   only extra deliveries are of transactions in flight at the kill (counted,
//   at most one per session).
//   Partition (a relay the test freezes between the primary and the
//   secondary): under policy block intake answers 451 4.3.0 (the policy's
//   answer, not the MTA's own timeout) and that message is never delivered;
//   under policy degrade the 250 comes after sync_timeout, the primary
//   records peer_outdated and the secondary outdated, a catch-up clears both,
//   and an outdated secondary's promotion is refused without --force
//   (EOUTDATED) and done with it.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_AUTH, testConfigYaml } from '../../helpers/config';
import { startFreezableRelay, type FreezableRelay } from '../../helpers/freezable-relay';
import { copies, mirrorStatus, smtpSources, untilBoth, writeMirrorYaml, type MirrorStatusJson } from '../../helpers/mirror-pair';
import { mirrorCli, startMirror, type MirrorProcess } from '../../helpers/mirror-process';
import { startMta, type MtaProcess } from '../../helpers/mta-process';
import { getFreePort, startSmtpSink, type SmtpSinkHandle } from '../../helpers/postfix-tools';
import { newSecret, proxyTls, waitUntil } from '../../helpers/proxy-fixtures';
import { SmtpDialog, message } from '../../helpers/smtp-dialog';
import { smtpSourceWithAcks, type SourceTally } from '../../helpers/smtp-source-acks';
import { tempDir } from '../../helpers/tmp';

const mtas: MtaProcess[] = [];
const mirrors: MirrorProcess[] = [];
const sinks: SmtpSinkHandle[] = [];
const relays: FreezableRelay[] = [];

// Declared before tempDir's own afterAll: Jest runs them in that order, and a
// process still writing into the folder makes its removal fail (ENOTEMPTY).
afterAll(async () => {
  for (const m of mtas) await m.crash();
  for (const m of mirrors) await m.crash();
  for (const s of sinks) await s.stop();
  for (const r of relays) await r.close();
});
const dir = tempDir('volley-mirror-sync-pair-');

const until = (check: (p: MirrorStatusJson, s: MirrorStatusJson) => boolean, a: string, b: string, what: string): Promise<unknown> => untilBoth(mirrors, check, a, b, what);

interface SyncPair {
  ppA: string;
  ppB: string;
  adminA: string;
  adminB: string;
  mirrorA: MirrorProcess;
  mirrorB: MirrorProcess;
  mtaA: MtaProcess;
  relay?: FreezableRelay;
}

/**
 * Node A (primary, epoch 1, with its MTA) and node B (secondary), in mode sync
 * with `sync`: A dials B through a freezable relay when `relayed`.
 */
async function syncPair(label: string, o: { sync: string; sinkPort: number; relayed: boolean }): Promise<SyncPair> {
  const tls = await proxyTls(join(dir, `${label}-tls`));
  writeFileSync(join(dir, 'mirror.secret'), newSecret());
  const ppA = join(dir, `${label}-a`);
  const ppB = join(dir, `${label}-b`);
  mkdirSync(ppA);
  mkdirSync(ppB);
  const port = { a: await getFreePort(), b: await getFreePort(), adminA: await getFreePort(), adminB: await getFreePort() };
  const relay = o.relayed ? await startFreezableRelay({ host: '127.0.0.1', port: port.b }) : undefined;
  if (relay) relays.push(relay);
  const adminA = `127.0.0.1:${port.adminA}`;
  const adminB = `127.0.0.1:${port.adminB}`;
  const extra = `mode: sync\n${o.sync}`;
  const cfgA = writeMirrorYaml(dir, `${label}-a`, { pp: ppA, self: port.a, peer: relay?.port ?? port.b, admin: adminA, tls, extra });
  const cfgB = writeMirrorYaml(dir, `${label}-b`, { pp: ppB, self: port.b, peer: port.a, admin: adminB, tls, extra });
  const mirrorA = await startMirror(cfgA, adminA);
  mirrors.push(mirrorA);
  expect((await mirrorCli(['promote', '--force', '--admin', adminA])).code).toBe(0);
  const mirrorB = await startMirror(cfgB, adminB);
  mirrors.push(mirrorB);
  // The same MTA config on both nodes: intake waits for the mirror's barrier.
  writeFileSync(join(dir, `${label}-mta.yaml`), testConfigYaml({ sinkPort: o.sinkPort, relayFrom: ['127.0.0.0/8'], extra: 'mirror: { mode: sync, timeout: 20s }\n' }));
  const mtaA = await startMta({ configPath: join(dir, `${label}-mta.yaml`), persistentPath: ppA, workers: 2 });
  mtas.push(mtaA);
  await until((p, s) => p.caught_up === true && s.caught_up === true, adminA, adminB, `${label}: caught up before the test`);
  return { ppA, ppB, adminA, adminB, mirrorA, mirrorB, mtaA, relay };
}

async function sink(label: string): Promise<{ handle: SmtpSinkHandle; dumpDir: string }> {
  const dumpDir = join(dir, `${label}-sink`);
  chmodSync(dir, 0o755); // smtp-sink writes its dumps as nobody
  const handle = await startSmtpSink({ dumpDir, maxConnections: 100 });
  sinks.push(handle);
  return { handle, dumpDir };
}

/** One message over a real SMTP session; the reply to its DATA. */
async function send(port: number, rcpt: string): Promise<{ code: number; text: string }> {
  const s = await SmtpDialog.open(port);
  try {
    await s.reply();
    await s.command('EHLO injector.test');
    return await s.transaction('load@source.test', [rcpt], message('sync'));
  } finally {
    await s.quit();
  }
}

async function queued(mta: MtaProcess): Promise<number> {
  return ((await (await fetch(`${mta.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as { queued: number }).queued;
}

test('sync drill: SIGKILL the primary\'s MTA and mirror under load, promote the secondary: every acknowledged message is delivered from it, extra copies only of transactions in flight', async () => {
  const SESSIONS = 4;
  const pair = await syncPair('drill', { sync: 'sync_timeout: 5s\nsync_policy: block\n', sinkPort: await getFreePort(), relayed: false });
  const tally: SourceTally = { acked: [], errors: [], restarts: 0 };
  let killed: Promise<void> | undefined;
  let refusedBeforeKill: string[] = [];
  const load = smtpSourceWithAcks({
    port: pair.mtaA.smtpPort,
    sessions: SESSIONS,
    messages: 600,
    domain: 'sync.test',
    tally,
    onAck: (n) => {
      if (n !== 200 || killed) return;
      refusedBeforeKill = tally.errors.filter((e) => /\b451\b/.test(e));
      killed = (async () => {
        // The mirror first (as in the async drill): whatever the MTA acknowledges after this is on node A alone, unless sync holds the 250.
        await pair.mirrorA.crash();
        await pair.mtaA.crash();
      })();
    },
  }).catch((err: Error) => err);
  await waitUntil(() => killed !== undefined, 180_000, () => `${tally.acked.length} acknowledged so far; errors: ${tally.errors.slice(-3).join('; ')}`);
  await killed;
  await load;
  await waitUntil(() => smtpSources().length === 0, 60_000, () => `smtp-source still running: ${smtpSources().join(' ')}`);
  const acked = [...tally.acked];
  expect(acked.length).toBeGreaterThanOrEqual(200);
  // Nothing was refused before the kill: the link was up, every barrier answered in time.
  expect(refusedBeforeKill).toEqual([]);

  // Caught up at its last contact and not outdated (policy block never marks it): promoted without --force.
  const promoted = await mirrorCli(['promote', '--admin', pair.adminB]);
  expect(promoted).toMatchObject({ code: 0 });
  const { handle, dumpDir } = await sink('drill');
  writeFileSync(join(dir, 'drill-mta-b.yaml'), testConfigYaml({ sinkPort: handle.port, relayFrom: ['127.0.0.0/8'], extra: 'mirror: { mode: sync, timeout: 20s }\n' }));
  const mtaB = await startMta({ configPath: join(dir, 'drill-mta-b.yaml'), persistentPath: pair.ppB, workers: 2 });
  mtas.push(mtaB);
  expect((await fetch(`${mtaB.adminUrl}/queue/retry`, { method: 'POST', headers: ADMIN_AUTH })).status).toBe(200);
  await waitUntil(() => acked.every((r) => copies(dumpDir).has(r)), 120_000, () => `${acked.filter((r) => !copies(dumpDir).has(r)).length} of ${acked.length} acknowledged messages not delivered from node B`);
  let left = -1;
  const poll = setInterval(() => void queued(mtaB).then((n) => (left = n), () => undefined), 200);
  try {
    await waitUntil(() => left === 0, 60_000, () => `${left} still queued on node B`);
  } finally {
    clearInterval(poll);
  }
  const seen = copies(dumpDir);
  const ackedSet = new Set(acked);
  const inFlight = [...seen.keys()].filter((r) => !ackedSet.has(r));
  const counts = { acked: acked.length, delivered: seen.size, lost: acked.filter((r) => !seen.has(r)).length, inFlightDelivered: inFlight.length, twice: [...seen.values()].filter((n) => n > 1).length };
  process.stderr.write(`mirror sync drill: ${JSON.stringify(counts)}\n`);
  expect(counts.lost).toBe(0);
  expect(counts.twice).toBe(0);
  // Delivered without a 250: only a transaction each session had in flight at the kill.
  expect(counts.inFlightDelivered).toBeLessThanOrEqual(SESSIONS);
}, 400_000);

test('partition under sync + block: intake answers 451 4.3.0 (the policy, not the MTA\'s own timeout) and that message is never delivered; the link back, mail flows again', async () => {
  const { handle, dumpDir } = await sink('block');
  const pair = await syncPair('block', { sync: 'sync_timeout: 1s\nsync_policy: block\n', sinkPort: handle.port, relayed: true });
  expect((await send(pair.mtaA.smtpPort, 'before@block.test')).code).toBe(250);
  pair.relay!.freeze();
  const r = await send(pair.mtaA.smtpPort, 'cut@block.test');
  expect(r.code).toBe(451);
  expect(r.text).toMatch(/^4\.3\.0 /);
  // The link is frozen: the withdrawal's own barrier could not reach the secondary either, and that is counted.
  const mtaMetrics = await (await fetch(`${pair.mtaA.adminUrl}/metrics`, { headers: ADMIN_AUTH })).text();
  expect(mtaMetrics).toMatch(/^volley_intake_withdrawals_unmirrored_total 1$/m);
  const a = await mirrorStatus(pair.adminA);
  expect(a.sync).toMatchObject({ sync_state: 'blocked', sync_policy: 'block' });
  expect(Number(a.sync!.barrier_timeouts)).toBeGreaterThanOrEqual(1);
  const human = await mirrorCli(['status', '--admin', pair.adminA]);
  expect(human.stdout).toMatch(/^sync\s+blocked \(policy block, timeout 1000 ms\)$/m);
  pair.relay!.thaw();
  // The primary notices the frozen link (pings), dials again and the secondary catches up: back in sync.
  await until((p, s) => (p.sync as { sync_state?: string }).sync_state === 'sync' && p.caught_up === true && s.caught_up === true, pair.adminA, pair.adminB, 'back in sync after the partition');
  expect((await send(pair.mtaA.smtpPort, 'after@block.test')).code).toBe(250);
  await waitUntil(() => copies(dumpDir).has('after@block.test') && copies(dumpDir).has('before@block.test'), 60_000, () => `delivered: ${[...copies(dumpDir).keys()].join(' ')}`);
  let left = -1;
  const poll = setInterval(() => void queued(pair.mtaA).then((n) => (left = n), () => undefined), 200);
  try {
    await waitUntil(() => left === 0, 60_000, () => `${left} still queued on node A`);
  } finally {
    clearInterval(poll);
  }
  expect(copies(dumpDir).has('cut@block.test')).toBe(false);
  await pair.mtaA.stop();
}, 300_000);

test('partition under sync + degrade: 250 after sync_timeout, primary peer_outdated and secondary outdated, cleared by a catch-up; an outdated secondary is promoted only with --force', async () => {
  const { handle, dumpDir } = await sink('degrade');
  const pair = await syncPair('degrade', { sync: 'sync_timeout: 1s\nsync_policy: degrade\n', sinkPort: handle.port, relayed: true });
  const cutOff = async (rcpt: string): Promise<void> => {
    pair.relay!.freeze();
    expect((await send(pair.mtaA.smtpPort, rcpt)).code).toBe(250);
    await until((p, s) => p.sync?.sync_state === 'degraded' && p.sync?.peer_outdated === true && s.sync?.outdated === true, pair.adminA, pair.adminB, 'degraded: primary ahead, secondary outdated');
  };
  await cutOff('alone-1@degrade.test');
  // The alert: Prometheus sees the primary degraded and its peer outdated.
  const metrics = await (await fetch(`http://${pair.adminA}/metrics`)).text();
  expect(metrics).toMatch(/^volley_mirror_sync_state\{state="degraded"\} 1$/m);
  expect(metrics).toMatch(/^volley_mirror_peer_outdated 1$/m);
  const human = await mirrorCli(['status', '--admin', pair.adminB]);
  expect(human.stdout).toMatch(/^outdated\s+yes/m);
  // The link back: the secondary catches up, both flags clear, barriers wait for it again.
  pair.relay!.thaw();
  await until((p, s) => p.sync?.sync_state === 'sync' && p.sync?.peer_outdated === false && s.sync?.outdated === false && s.caught_up === true, pair.adminA, pair.adminB, 'back in sync, flags cleared');
  expect((await send(pair.mtaA.smtpPort, 'synced@degrade.test')).code).toBe(250);
  // Cut again: the secondary is outdated, and promotion refuses it until forced.
  await cutOff('alone-2@degrade.test');
  // Acknowledged alone is still acknowledged: the primary delivers it.
  await waitUntil(() => ['alone-1@degrade.test', 'synced@degrade.test', 'alone-2@degrade.test'].every((r) => copies(dumpDir).has(r)), 60_000, () => `delivered: ${[...copies(dumpDir).keys()].join(' ')}`);
  await pair.mtaA.stop();
  const refused = await mirrorCli(['promote', '--admin', pair.adminB]);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/outdated.*\(EOUTDATED\)/);
  expect((await mirrorStatus(pair.adminB)).role).toBe('secondary');
  const forced = await mirrorCli(['promote', '--force', '--admin', pair.adminB]);
  expect(forced).toMatchObject({ code: 0 });
  expect(await mirrorStatus(pair.adminB)).toMatchObject({ role: 'primary', sync: { outdated: false } });
}, 300_000);
