// Intake under a sync HA mirror against intake with none (issue 18's
// `mirror_sync_intake_ratio`, target >= 0.8): smtp-source -> MTA (fsync on,
// delivery paused, so the figure is the intake path) with no mirror, then the
// same MTA config with `mirror: { mode: sync }` in front of a pair of `volley
// mirror` daemons in mode sync on this machine (primary on the MTA's path,
// secondary on a second one), in alternation, round by round: a ratio is only
// sound between runs taken side by side on a shared machine. Every 250 of the
// sync runs came after the secondary's durable ack for it. Run alone:
// `npx tsx test/bench/mirror-sync.ts` (BENCH_MESSAGES, BENCH_ROUNDS,
// BENCH_SESSIONS). Each run also reports the CPU per message of every
// process (cpu-split.ts): on 2 cores the mirrors' CPU is the MTA's loss.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
import { cpuArithmetic, cpuPerMessage, cpuSnapshot, type CpuArithmetic } from './cpu-split';
import { processTree, wakeups } from './mta-metrics';

export interface MirrorSyncIntakeResult {
  /** Median of the per-round ratios sync / none. */
  ratio: number;
  rounds: { none: number; sync: number }[];
  /** Each round's CPU µs per message, part by part (mta = primary + workers), and the 2-core arithmetic from it. */
  cpu: { none: Record<string, number>; sync: Record<string, number>; arithmetic: CpuArithmetic }[];
  /** Each round's wake-ups a message, part by part (main threads: mta-metrics.ts `wakeups`). */
  wakeups: { none: Record<string, number>; sync: Record<string, number> }[];
  /** The primary's last barrier latency of each sync run, ms. */
  barrierLastMs: number[];
  /** Each sync run's mean barrier latency (warm-up included) and barriers answered, from the primary mirror's histogram. */
  barrierMeanMs: number[];
  barriers: number[];
  batches: number[];
}

interface Load {
  messages: number;
  sessions: number;
  sizeBytes: number;
  workers?: number;
}

/** The primary mirror's barrier histogram: its mean in ms and its count. */
async function barrierMean(admin: string): Promise<{ meanMs: number; count: number }> {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  const count = value('volley_mirror_barrier_seconds_count');
  return { meanMs: Number(((value('volley_mirror_barrier_seconds_sum') * 1000) / count).toFixed(2)), count };
}

interface RunResult {
  msgsPerSec: number;
  /** CPU µs per message of the timed part: mta (primary + workers), smtp-source, and in a sync run mirror-primary, mirror-secondary. */
  cpuUs: Record<string, number>;
  /** Wake-ups a message of the same parts but smtp-source (not Node). */
  wakeupsPerMsg: Record<string, number>;
  barrierLastMs?: number;
  barrierMeanMs?: number;
  barriers?: number;
  /** Replication batches the primary had acknowledged (warm-up included): one fsync round on the secondary each. */
  batches?: number;
}

/** One timed intake run (after a short warm-up) on a fresh persistent path; `sync`: the MTA runs under a sync mirror pair. */
async function intakeRun(load: Load, sync: boolean): Promise<RunResult> {
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
      const parts: Record<string, number[]> = { mta: processTree(mta.proc.pid!) };
      if (sync) Object.assign(parts, { 'mirror-primary': [mirrors[0].proc.pid!], 'mirror-secondary': [mirrors[1].proc.pid!] });
      if (pinned()) for (const pid of [...parts.mta, ...(parts['mirror-primary'] ?? [])]) pin(pid, PRIMARY_CPU);
      const cpu0 = cpuSnapshot(parts);
      const woken0 = Object.fromEntries(Object.entries(parts).map(([k, pids]) => [k, wakeups(pids)]));
      const r = await runSmtpSource({ port: mta.smtpPort, messages: load.messages, sessions: load.sessions, sizeBytes: load.sizeBytes, timeoutMs: runDeadlineMs(load.messages) });
      const cpuUs = cpuPerMessage(cpu0, cpuSnapshot(parts), load.messages);
      const wakeupsPerMsg = Object.fromEntries(Object.entries(parts).map(([k, pids]) => [k, Number(((wakeups(pids) - woken0[k]) / load.messages).toFixed(2))]));
      if (r.exitCode !== 0) throw new VolleyError('BENCH_MIRROR', `smtp-source failed (${r.exitCode}): ${r.stderr.slice(-1000)}`);
      const msgsPerSec = Math.round((load.messages * 1000) / r.elapsedMs);
      if (!sync) return { msgsPerSec, cpuUs, wakeupsPerMsg };
      const st = await mirrorStatus(adminA);
      const barrierLastMs = Number(st.sync?.barrier_last_ms);
      const mean = await barrierMean(adminA);
      return { msgsPerSec, cpuUs, wakeupsPerMsg, barrierLastMs, barrierMeanMs: mean.meanMs, barriers: mean.count, batches: Number(st.batches) };
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

// BENCH_PIN_PRIMARY=1: the primary node (its MTA and its mirror) on CPU 0, the
// rest (this process, so smtp-source, and the secondary) on CPU 1: two
// machines on one, as a pair is deployed (the secondary on its own instance).
const PRIMARY_CPU = '0';
const pinned = (): boolean => process.env.BENCH_PIN_PRIMARY === '1';
function pin(pid: number, cpus: string): void {
  const r = spawnSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
  if (r.status !== 0) throw new VolleyError('BENCH_PIN', `taskset ${cpus} ${pid} failed (${r.status})`);
}

export async function measureMirrorSyncIntake(load: Load & { rounds: number }, onRound?: (i: number, r: { none: number; sync: number }) => void): Promise<MirrorSyncIntakeResult> {
  if (pinned()) pin(process.pid, '1');
  const rounds: { none: number; sync: number }[] = [];
  const cpu: MirrorSyncIntakeResult['cpu'] = [];
  const woken: MirrorSyncIntakeResult['wakeups'] = [];
  const barrierLastMs: number[] = [];
  const barrierMeanMs: number[] = [];
  const barriers: number[] = [];
  const batches: number[] = [];
  for (let i = 0; i < load.rounds; i++) {
    const none = await intakeRun(load, false);
    const sync = await intakeRun(load, true);
    rounds.push({ none: none.msgsPerSec, sync: sync.msgsPerSec });
    woken.push({ none: none.wakeupsPerMsg, sync: sync.wakeupsPerMsg });
    cpu.push({ none: none.cpuUs, sync: sync.cpuUs, arithmetic: cpuArithmetic({ none, sync: { msgsPerSec: sync.msgsPerSec, cpuUs: sync.cpuUs } }) });
    if (sync.barrierLastMs !== undefined) barrierLastMs.push(sync.barrierLastMs);
    if (sync.barrierMeanMs !== undefined) barrierMeanMs.push(sync.barrierMeanMs);
    if (sync.barriers !== undefined) barriers.push(sync.barriers);
    if (sync.batches !== undefined) batches.push(sync.batches);
    onRound?.(i, rounds[i]);
  }
  const ratios = rounds.map((r) => r.sync / r.none).sort((a, b) => a - b);
  const mid = Math.floor(ratios.length / 2);
  const ratio = ratios.length % 2 ? ratios[mid] : (ratios[mid - 1] + ratios[mid]) / 2;
  return { ratio: Number(ratio.toFixed(2)), rounds, cpu, wakeups: woken, barrierLastMs, barrierMeanMs, barriers, batches };
}

/** The CPU lines of a result: per round, part by part, and the 2-core arithmetic. */
export function mirrorSyncCpuLines(r: MirrorSyncIntakeResult): string[] {
  const parts = (c: Record<string, number>): string => Object.entries(c).map(([k, v]) => `${k} ${v}`).join(', ');
  return r.cpu.flatMap((c, i) => [
    `  round ${i + 1} CPU us/msg: none ${c.arithmetic.noneUs} (${parts(c.none)}); sync ${c.arithmetic.syncUs} (${parts(c.sync)}); wake-ups a message: none ${parts(r.wakeups[i].none)}; sync ${parts(r.wakeups[i].sync)}`,
    `  round ${i + 1}: cores busy none ${c.arithmetic.noneBusy}, sync ${c.arithmetic.syncBusy}; the mirrors' share of the sync run's CPU ${c.arithmetic.mirrorShare} (secondary ${c.arithmetic.secondaryShare}); ratio with the secondary on its own machine (estimate, CPU-bound runs only) ${c.arithmetic.ratioSecondaryElsewhere}; ceiling when the cores bound both runs ${c.arithmetic.cpuBoundRatio}, ${c.arithmetic.cpuBoundRatioSecondaryElsewhere} with the secondary elsewhere`,
  ]);
}

if (require.main === module) {
  const load = { messages: Number(process.env.BENCH_MESSAGES ?? 20_000), sessions: Number(process.env.BENCH_SESSIONS ?? 20), sizeBytes: 2048, rounds: Number(process.env.BENCH_ROUNDS ?? 3) };
  const loadavg = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`load average at the start: ${loadavg()}`);
  measureMirrorSyncIntake(load, (i, r) => console.log(`round ${i + 1}: no mirror ${r.none} msg/s, sync mirror ${r.sync} msg/s (load average ${loadavg()})`)).then(
    (r) => {
      for (const l of mirrorSyncCpuLines(r)) console.log(l);
      console.log(`intake with a sync mirror against none, ${load.messages} 2 KB messages, ${load.sessions} sessions, ${load.rounds} rounds: mirror_sync_intake_ratio ${r.ratio} (barrier latency at the end of each sync run: ${r.barrierLastMs.join(', ')} ms; mean per run: ${r.barrierMeanMs.join(', ')} ms over ${r.barriers.join(', ')} barriers; ${r.batches.join(', ')} replication batches)`);
    },
    (err: Error) => {
      console.error(err.message);
      process.exitCode = 1;
    },
  );
}
