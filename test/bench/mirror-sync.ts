// Intake under a sync HA mirror against intake with none (issue 18's
// `mirror_sync_intake_ratio`, target >= 0.8): smtp-source -> MTA (fsync on,
// delivery paused, so the figure is the intake path) with no mirror, then the
// same MTA config with `mirror: { mode: sync }` in front of a pair of `volley
// mirror` daemons in mode sync on this machine (primary on the MTA's path,
// secondary on a second one), in alternation, round by round: a ratio is only
// sound between runs taken side by side on a shared machine. Every 250 of the
// sync runs came after the secondary's durable ack for it. Run alone:
// `npx tsx test/bench/mirror-sync.ts` (BENCH_MESSAGES, BENCH_ROUNDS).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VolleyError } from '../../runtime/shared/errors';
import { ADMIN_AUTH, testConfigYaml } from '../helpers/config';
import { writeMirrorYaml, mirrorStatus } from '../helpers/mirror-pair';
import { mirrorCli, startMirror, type MirrorProcess } from '../helpers/mirror-process';
import { startMta } from '../helpers/mta-process';
import { getFreePort, runSmtpSource } from '../helpers/postfix-tools';
import { newSecret, proxyTls, waitUntil } from '../helpers/proxy-fixtures';
import { ownMta, runDeadlineMs } from './run-guard';

export interface MirrorSyncIntakeResult {
  /** Median of the per-round ratios sync / none. */
  ratio: number;
  rounds: { none: number; sync: number }[];
  /** The primary's last barrier latency of each sync run, ms. */
  barrierLastMs: number[];
  /** Each sync run's mean barrier latency (warm-up included) and barriers answered, from the primary mirror's histogram. */
  barrierMeanMs: number[];
  barriers: number[];
}

interface Load {
  messages: number;
  sessions: number;
  sizeBytes: number;
  workers?: number;
}

/** One timed intake run (after a short warm-up) on a fresh persistent path; `sync`: the MTA runs under a sync mirror pair. */
/** The primary mirror's barrier histogram: its mean in ms and its count. */
async function barrierMean(admin: string): Promise<{ meanMs: number; count: number }> {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  const count = value('volley_mirror_barrier_seconds_count');
  return { meanMs: Number(((value('volley_mirror_barrier_seconds_sum') * 1000) / count).toFixed(2)), count };
}

async function intakeRun(load: Load, sync: boolean): Promise<{ msgsPerSec: number; barrierLastMs?: number; barrierMeanMs?: number; barriers?: number }> {
  const dir = mkdtempSync(join(tmpdir(), `volley-bench-mirror-${sync ? 'sync' : 'none'}-`));
  const mirrors: MirrorProcess[] = [];
  const ppA = join(dir, 'a');
  mkdirSync(ppA);
  let adminA = '';
  let mtaLog = (): string => '';
  try {
    if (sync) {
      const ppB = join(dir, 'b');
      mkdirSync(ppB);
      const tls = await proxyTls(join(dir, 'tls'));
      writeFileSync(join(dir, 'mirror.secret'), newSecret());
      const port = { a: await getFreePort(), b: await getFreePort(), adminA: await getFreePort(), adminB: await getFreePort() };
      adminA = `127.0.0.1:${port.adminA}`;
      const adminB = `127.0.0.1:${port.adminB}`;
      const extra = 'mode: sync\nsync_timeout: 10s\nsync_policy: block\n';
      mirrors.push(await startMirror(writeMirrorYaml(dir, 'a', { pp: ppA, self: port.a, peer: port.b, admin: adminA, tls, extra }), adminA));
      const promoted = await mirrorCli(['promote', '--force', '--admin', adminA]);
      if (promoted.code !== 0) throw new VolleyError('BENCH_MIRROR', `promote failed: ${promoted.stderr}`);
      mirrors.push(await startMirror(writeMirrorYaml(dir, 'b', { pp: ppB, self: port.b, peer: port.a, admin: adminB, tls, extra }), adminB));
      let caught = false;
      await waitUntil(() => {
        void mirrorStatus(adminA).then((s) => (caught = s.caught_up === true), () => undefined);
        return caught;
      }, 60_000, () => 'the bench pair did not catch up');
    }
    const config = join(dir, 'volley.yaml');
    writeFileSync(config, testConfigYaml({ relayFrom: ['127.0.0.0/8'], extra: sync ? 'mirror: { mode: sync, timeout: 20s }\n' : '' }));
    const mta = await startMta({ configPath: config, persistentPath: ppA, workers: load.workers ?? 2 });
    const stopMta = ownMta(mta);
    mtaLog = () => mta.log();
    try {
      await fetch(`${mta.adminUrl}/queue/pause`, { method: 'POST', headers: ADMIN_AUTH });
      await runSmtpSource({ port: mta.smtpPort, messages: Math.min(500, load.messages), sessions: load.sessions, sizeBytes: load.sizeBytes });
      const r = await runSmtpSource({ port: mta.smtpPort, messages: load.messages, sessions: load.sessions, sizeBytes: load.sizeBytes, timeoutMs: runDeadlineMs(load.messages) });
      if (r.exitCode !== 0) throw new VolleyError('BENCH_MIRROR', `smtp-source failed (${r.exitCode}): ${r.stderr.slice(-1000)}`);
      const msgsPerSec = Math.round((load.messages * 1000) / r.elapsedMs);
      if (!sync) return { msgsPerSec };
      const barrierLastMs = Number((await mirrorStatus(adminA)).sync?.barrier_last_ms);
      const mean = await barrierMean(adminA);
      return { msgsPerSec, barrierLastMs, barrierMeanMs: mean.meanMs, barriers: mean.count };
    } finally {
      await stopMta();
    }
  } catch (err) {
    // What the mirrors logged at warn and above: a refused 250 is theirs to explain.
    const logs = mirrors.map((m, i) => `mirror ${i === 0 ? 'A' : 'B'}: ${m.log().split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-10).join('\n')}`);
    const mtaWarnings = mtaLog().split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-5);
    const status = adminA ? await mirrorStatus(adminA).then((st) => JSON.stringify(st), (e: Error) => e.message) : '';
    if (sync) (err as Error).message += `\n${logs.join('\n')}\nmta: ${mtaWarnings.join('\n')}\nprimary mirror status: ${status}`;
    throw err;
  } finally {
    for (const m of mirrors) await m.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function measureMirrorSyncIntake(load: Load & { rounds: number }, onRound?: (i: number, r: { none: number; sync: number }) => void): Promise<MirrorSyncIntakeResult> {
  const rounds: { none: number; sync: number }[] = [];
  const barrierLastMs: number[] = [];
  const barrierMeanMs: number[] = [];
  const barriers: number[] = [];
  for (let i = 0; i < load.rounds; i++) {
    const none = await intakeRun(load, false);
    const sync = await intakeRun(load, true);
    rounds.push({ none: none.msgsPerSec, sync: sync.msgsPerSec });
    if (sync.barrierLastMs !== undefined) barrierLastMs.push(sync.barrierLastMs);
    if (sync.barrierMeanMs !== undefined) barrierMeanMs.push(sync.barrierMeanMs);
    if (sync.barriers !== undefined) barriers.push(sync.barriers);
    onRound?.(i, rounds[i]);
  }
  const ratios = rounds.map((r) => r.sync / r.none).sort((a, b) => a - b);
  const mid = Math.floor(ratios.length / 2);
  const ratio = ratios.length % 2 ? ratios[mid] : (ratios[mid - 1] + ratios[mid]) / 2;
  return { ratio: Number(ratio.toFixed(2)), rounds, barrierLastMs, barrierMeanMs, barriers };
}

if (require.main === module) {
  const load = { messages: Number(process.env.BENCH_MESSAGES ?? 20_000), sessions: 20, sizeBytes: 2048, rounds: Number(process.env.BENCH_ROUNDS ?? 3) };
  measureMirrorSyncIntake(load, (i, r) => console.log(`round ${i + 1}: no mirror ${r.none} msg/s, sync mirror ${r.sync} msg/s`)).then(
    (r) => console.log(`intake with a sync mirror against none, ${load.messages} 2 KB messages, ${load.rounds} rounds: mirror_sync_intake_ratio ${r.ratio} (barrier latency at the end of each sync run: ${r.barrierLastMs.join(', ')} ms; mean per run: ${r.barrierMeanMs.join(', ')} ms over ${r.barriers.join(', ')} barriers)`),
    (err: Error) => {
      console.error(err.message);
      process.exitCode = 1;
    },
  );
}
