// `npm run bench`: the figures the issues set targets for, on this machine.
// Prints a readable report and ends with one `BENCH {json}` line; or, when a
// run fails (mail deferred, a deadline hit), with `BENCH_PARTIAL {json}` of the
// figures it has, a `FAILED ...` line, and a non-zero exit.
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { measureBacklogDrain } from './backlog';
import { measureDrain } from './drain';
import { measureMirrorSyncIntake, mirrorSyncCpuLines } from './mirror-sync';
import { measureEndToEnd } from './e2e';
import { eventsFigures, measureEndToEndWithEvents, measureWebhookRate, type EventsE2eResult, type WebhookRateResult } from './events';
import { measureNodeFloor, measureToolsCeiling } from './floor';
import { measureFleet } from './fleet';
import { measureProxyAlone } from './proxy-alone';
import { measureThroughProxy } from './proxy';
import { measureIntake, measureStartup } from './intake';
import { mirrorFigures } from './mirror-figures';
import { measurePostfixIntake, measurePostfixRelay } from './postfix';
import { measureSpoolFormats } from './spool-formats';
import { runDeadlineMs } from './run-guard';
import { measureWithWorkers, workersCpuFigures, type WorkersRun } from './workers-cpu';

const LOAD = { messages: Number(process.env.BENCH_MESSAGES ?? 20_000), sessions: 20, sizeBytes: 2048 };
const STARTUP_MESSAGES = Number(process.env.BENCH_STARTUP_MESSAGES ?? 1_000_000);
// Messages through each end-to-end setup before its timed run. A fresh
// MTA's V8 is still compiling its hot path for ~20 s (measured: the worker's
// compiler threads used 570 ms of CPU in a 3 s window 6 s in, 139 ms 23 s
// in), and runs timed from a cold start read 10-28 % slower than the same
// build warmed with 30,000. A server's throughput is its steady state, so
// every setup, Postfix included, gets the same warm-up; the cold rate is
// reported beside it.
const WARMUP_MESSAGES = Number(process.env.BENCH_WARMUP_MESSAGES ?? 30_000);
/** The mirror's promotion is timed with this many messages queued (issue 18: 1,000,000), and its full resync copies this many MB. */
const MIRROR_PROMOTE_MESSAGES = Number(process.env.BENCH_MIRROR_PROMOTE_MESSAGES ?? 1_000_000);
const MIRROR_RESYNC_MB = Number(process.env.BENCH_MIRROR_RESYNC_MB ?? 512);
/** Rounds of intake with no mirror and with a sync mirror pair, side by side (issue 18). */
const MIRROR_SYNC_ROUNDS = Number(process.env.BENCH_MIRROR_SYNC_ROUNDS ?? 3);
/** Events pre-written for the webhook delivery rate (issue 16: at least 200,000). */
const WEBHOOK_EVENTS = Number(process.env.BENCH_WEBHOOK_EVENTS ?? 200_000);

/**
 * Open files the bench needs at once: the held sink holds up to 1,024
 * connections in this process, and with fewer descriptors than that its
 * accepts fail and libuv closes the excess unanswered (closed before the
 * greeting, to the MTA). Node raises its soft limit to the hard one at start.
 */
const MIN_OPEN_FILES = 4096;

/** The figures measured so far: printed as BENCH_PARTIAL if a run fails. */
const partial: Record<string, unknown> = {};
/** The measurement under way, for the FAILED line. */
let stage = 'start-up';
const line = (s: string): boolean => process.stdout.write(`${s}\n`);

async function main(): Promise<void> {
  const cores = availableParallelism();
  line(`Volley benchmark on ${cores} cores (${cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}`);
  line(`load: ${LOAD.messages} messages of ${LOAD.sizeBytes} bytes, ${LOAD.sessions} concurrent sessions, a new connection per message (smtp-source)`);
  const openFiles = openFileLimit();
  if (openFiles < MIN_OPEN_FILES) throw new Error(`the open-file limit is ${openFiles}, under the ${MIN_OPEN_FILES} the bench needs (the held sink alone holds 1,024 connections): raise it (ulimit -n ${MIN_OPEN_FILES * 4}) and run again`);
  // Every run has its own deadline; this one is for everything between them (a stop, a start-up).
  const allMs = 28 * (runDeadlineMs(WARMUP_MESSAGES) + runDeadlineMs(LOAD.messages)) + 8 * runDeadlineMs(LOAD.messages) + MIRROR_SYNC_ROUNDS * 2 * runDeadlineMs(LOAD.messages) + runDeadlineMs(STARTUP_MESSAGES, 10_000) + runDeadlineMs(MIRROR_PROMOTE_MESSAGES, 2_000) + runDeadlineMs(LOAD.messages) + runDeadlineMs(0) + runDeadlineMs(WEBHOOK_EVENTS, 1000);
  // Not unref'd: a wait that holds no handle would otherwise let the process end silently, with no FAILED line.
  const watchdog = setTimeout(() => fail(new Error(`the whole bench's deadline of ${Math.round(allMs / 60_000)} minutes hit`)), allMs);
  line(`open files: ${openFiles}; each run fails at its deadline (a minute plus its messages at 100 msg/s) or at the first message its MTA defers`);

  // What this machine allows before any Volley code: the load tools alone, and a bare Node responder.
  stage = 'floor: smtp-source -> smtp-sink';
  const tools = await measureToolsCeiling(LOAD);
  partial.tools_ceiling_msgs_per_s = tools.msgsPerSec;
  line(`floor: smtp-source -> smtp-sink directly ${tools.msgsPerSec} msg/s (smtp-sink ${tools.cpuUsPerMsg} us CPU/msg)`);
  stage = 'floor: bare Node responder';
  const nodeFloor = await measureNodeFloor(LOAD);
  partial.node_floor_msgs_per_s = nodeFloor.msgsPerSec;
  line(`floor: smtp-source -> a bare Node SMTP responder (no spool, no checks) ${nodeFloor.msgsPerSec} msg/s, ${nodeFloor.cpuUsPerMsg} us CPU/msg`);

  stage = 'intake';
  const all = await measureIntake({ ...LOAD });
  partial.intake_msgs_per_s = all.msgsPerSec;
  line(`intake, default ${all.workers} worker(s): ${all.msgsPerSec} msg/s, end of DATA -> 250 p50 ${all.p50Ms} ms p99 ${all.p99Ms} ms, ${all.cpuUsPerMsg} us CPU/msg, RSS ${all.rssMb} MB`);
  const one = all.workers === 1 ? all : await measureIntake({ ...LOAD, workers: 1 });
  line(`intake, 1 worker:  ${one.msgsPerSec} msg/s, p50 ${one.p50Ms} ms p99 ${one.p99Ms} ms, ${one.cpuUsPerMsg} us CPU/msg`);
  const two = all.workers === 2 ? all : await measureIntake({ ...LOAD, workers: 2 });
  line(`intake, 2 workers: ${two.msgsPerSec} msg/s, p50 ${two.p50Ms} ms p99 ${two.p99Ms} ms, ${two.cpuUsPerMsg} us CPU/msg`);
  partial.intake_msgs_per_s_1w = one.msgsPerSec;
  partial.intake_msgs_per_s_2w = two.msgsPerSec;
  stage = 'Postfix intake';
  const postfix = await measurePostfixIntake({ ...LOAD, timeoutMs: runDeadlineMs(LOAD.messages) });
  partial.postfix_intake_msgs_per_s = Math.round(postfix.msgsPerSec);
  line(`default Postfix intake, same load: ${Math.round(postfix.msgsPerSec)} msg/s -> Volley/Postfix ${(all.msgsPerSec / postfix.msgsPerSec).toFixed(2)}x`);

  // The end-to-end figures and their baselines are measured in alternation,
  // round by round, and the medians reported: on a shared 2-core VM single
  // runs vary by up to 50 %, and the machine's speed drifts over minutes, so
  // a ratio is only sound between runs taken side by side. Direct and through
  // the proxy run in all five rounds; the 300 ms hold, the same sink with no
  // hold, and Postfix relaying the same load in three of them; so does the
  // direct load with a webhook and an SQLite sink enabled (test/bench/events.ts).
  // smtp-sink's holds are whole seconds, so the 300 ms hold is the bench's
  // own held sink (test/helpers/held-sink.ts), which answers one transaction
  // at a time per connection: the same sink with no hold is the like-for-like
  // baseline, reported beside the ratio to the direct figure that the issue
  // asks for.
  // 20,000 timed messages: a run ends when the sink has the last one, so a
  // held run's last transactions add their 300-600 ms to its time, a tenth of
  // a 10,000-message run and half that of this one.
  const pairLoad = { ...LOAD, warmupMessages: WARMUP_MESSAGES };
  const directRuns: Awaited<ReturnType<typeof measureEndToEnd>>[] = [];
  const proxyRuns: Awaited<ReturnType<typeof measureThroughProxy>>[] = [];
  const slowRuns: Awaited<ReturnType<typeof measureEndToEnd>>[] = [];
  const held0Runs: Awaited<ReturnType<typeof measureEndToEnd>>[] = [];
  const postfixRelayRuns: Awaited<ReturnType<typeof measurePostfixRelay>>[] = [];
  const eventsRuns: EventsE2eResult[] = [];
  /** The same load with 1 worker and with 4 (every message under an hourly rate), rounds 1, 3 and 5. */
  const oneWorkerRuns: WorkersRun[] = [];
  const fourWorkerRuns: WorkersRun[] = [];
  /** The direct run of each events run's round, for the paired ratio. */
  const eventsDirect: typeof directRuns = [];
  const rounds: Record<string, number>[] = [];
  partial.e2e_rounds = rounds;
  for (let i = 0; i < 5; i++) {
    const round: Record<string, number> = {};
    rounds.push(round);
    stage = `end to end, round ${i + 1}: direct`;
    directRuns.push(await measureEndToEnd({ ...pairLoad, label: stage }));
    round.direct = directRuns[i].msgsPerSec;
    if (i % 2 === 0) {
      // Right after direct: the closest pair this machine's drift allows.
      stage = `end to end, round ${i + 1}: with a webhook and an SQLite sink`;
      eventsRuns.push(await measureEndToEndWithEvents({ ...pairLoad, label: stage }));
      eventsDirect.push(directRuns[i]);
      round.events = eventsRuns[eventsRuns.length - 1].msgsPerSec;
      Object.assign(partial, eventsFigures(eventsDirect, eventsRuns).figures);
    }
    stage = `end to end, round ${i + 1}: through one proxy`;
    proxyRuns.push(await measureThroughProxy(pairLoad));
    round.proxy = proxyRuns[i].msgsPerSec;
    if (i % 2 === 0) {
      stage = `end to end, round ${i + 1}: held sink, 300 ms hold`;
      slowRuns.push(await measureEndToEnd({ ...pairLoad, heldSinkMs: 300, label: stage }));
      round.held300 = slowRuns[slowRuns.length - 1].msgsPerSec;
      stage = `end to end, round ${i + 1}: held sink, no hold`;
      held0Runs.push(await measureEndToEnd({ ...pairLoad, heldSinkMs: 0, label: stage }));
      round.held0 = held0Runs[held0Runs.length - 1].msgsPerSec;
      stage = `end to end, round ${i + 1}: Postfix relaying`;
      // The Postfix helper bounds its warm-up and its timed run each by this.
      postfixRelayRuns.push(await measurePostfixRelay({ ...pairLoad, timeoutMs: runDeadlineMs(Math.max(pairLoad.warmupMessages, pairLoad.messages)) }));
      round.postfix = Math.round(postfixRelayRuns[postfixRelayRuns.length - 1].msgsPerSec);
      for (const workers of [1, 4]) {
        stage = `end to end, round ${i + 1}: ${workers} MTA worker(s), every message under an hourly rate`;
        const r = await measureWithWorkers({ ...pairLoad, workers, label: stage });
        (workers === 1 ? oneWorkerRuns : fourWorkerRuns).push(r);
        round[`cpu_us_${workers}w`] = r.cpuUsPerMsg;
      }
      Object.assign(partial, workersCpuFigures(oneWorkerRuns, fourWorkerRuns).figures);
    }
    line(`  round ${i + 1} (msg/s): ${Object.entries(round).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  }
  const e2e = median(directRuns);
  const viaProxy = median(proxyRuns);
  const slow = median(slowRuns);
  const held0 = median(held0Runs);
  const relay = median(postfixRelayRuns);
  const runs = (rs: { msgsPerSec: number }[]): string => `median of ${rs.map((r) => Math.round(r.msgsPerSec)).join(', ')}`;
  // A ratio is taken within each round (runs side by side), and the median of
  // those is reported: the paired estimate the alternation is for.
  const directOfRound = (j: number, every: number): number => directRuns[j * every].msgsPerSec;
  const paired = (rs: { msgsPerSec: number }[], every: number, invert = false): number =>
    medianOf(rs.map((r, j) => (invert ? directOfRound(j, every) / r.msgsPerSec : r.msgsPerSec / directOfRound(j, every))));
  const slowRatio = paired(slowRuns, 2);
  const slowVsHeld0 = medianOf(slowRuns.map((r, j) => r.msgsPerSec / held0Runs[j].msgsPerSec));
  const vsPostfix = paired(postfixRelayRuns, 2, true);
  const proxyRatio = paired(proxyRuns, 1);
  const cold = medianOf(directRuns.map((r) => r.warmupMsgsPerSec));
  line(`end-to-end runs are timed after ${WARMUP_MESSAGES} warm-up messages through each setup (Postfix's too)`);
  line(`end to end (smtp-source -> MTA -> smtp-sink), ${all.workers} worker(s): ${e2e.msgsPerSec} msg/s (${runs(directRuns)}), MTA CPU ${e2e.cpuUsPerMsg} us/msg, ${e2e.recordsPerCommit} spool records per durable write`);
  line(`  the same MTA's first ${WARMUP_MESSAGES} messages after start (the warm-up, JIT compiling): ${cold} msg/s (median of ${directRuns.map((r) => r.warmupMsgsPerSec).join(', ')})`);
  line(`end to end, sink holding every transaction 300 ms: ${slow.msgsPerSec} msg/s (${runs(slowRuns)}) = ${slowRatio.toFixed(2)} of the zero-latency figure (round by round; ${(slow.msgsPerSec / e2e.msgsPerSec).toFixed(2)} of the medians); the same held sink with no hold ${held0.msgsPerSec} msg/s (${runs(held0Runs)}) -> ${slowVsHeld0.toFixed(2)}`);
  line(`default Postfix relaying the same load: ${Math.round(relay.msgsPerSec)} msg/s (${runs(postfixRelayRuns)}) -> Volley/Postfix ${vsPostfix.toFixed(2)}x round by round (${(e2e.msgsPerSec / relay.msgsPerSec).toFixed(2)}x of the medians)`);

  line(`through one volley proxy: ${viaProxy.msgsPerSec} msg/s (${runs(proxyRuns)}) = ${proxyRatio.toFixed(2)} of direct round by round (${(viaProxy.msgsPerSec / e2e.msgsPerSec).toFixed(2)} of the medians); transaction p50 ${viaProxy.txP50Ms} ms p99 ${viaProxy.txP99Ms} ms (direct ${e2e.txP50Ms} / ${e2e.txP99Ms} ms)`);

  const workersCpu = workersCpuFigures(oneWorkerRuns, fourWorkerRuns);
  for (const l of workersCpu.lines) line(l);

  // One connection to a destination 20 ms away, with a backlog: pipelining across transactions at work.
  const backlogLoad = { messages: 500, sizeBytes: LOAD.sizeBytes, oneWayMs: 10 };
  stage = 'backlog over one connection';
  const backlog = await measureBacklogDrain({ ...backlogLoad, pipelining: true });
  partial.backlog_1conn_rtt20_msgs_per_s = backlog.msgsPerSec;
  const backlogNoPipe = await measureBacklogDrain({ ...backlogLoad, pipelining: false });
  partial.backlog_1conn_rtt20_nopipelining_msgs_per_s = backlogNoPipe.msgsPerSec;
  // The same backlog with the MX leg held by a volley proxy: the link pipelines transactions too (issue 20).
  const backlogProxy = await measureBacklogDrain({ ...backlogLoad, pipelining: true, viaProxy: true });
  partial.backlog_1conn_rtt20_proxy_msgs_per_s = backlogProxy.msgsPerSec;
  line(`backlog over one connection, 20 ms round trip: ${backlog.msgsPerSec} msg/s; to a server without PIPELINING ${backlogNoPipe.msgsPerSec} msg/s; through one proxy ${backlogProxy.msgsPerSec} msg/s (${(backlogProxy.msgsPerSec / backlog.msgsPerSec).toFixed(2)} of direct)`);

  // The webhook sink alone, from a pre-written log, with batches of 500.
  stage = 'webhook delivery rate';
  const webhook: WebhookRateResult = await measureWebhookRate({ events: WEBHOOK_EVENTS });
  const events = eventsFigures(eventsDirect, eventsRuns, webhook);
  Object.assign(partial, events.figures);
  for (const l of events.lines) line(l);

  stage = 'local fleet';
  const fleet = await measureFleet({ ...LOAD, messages: Math.min(LOAD.messages, 10_000) });
  line(`local fleet (smtp-source -> lb -> MTA x2 -> proxy x2 -> smtp-sink): ${fleet.msgsPerSec} msg/s (${fleet.elapsedMs} ms until the sink had all)`);
  line(`  CPU per message by part: ${Object.entries(fleet.cpuUsPerMsg).map(([k, v]) => `${k} ${v} us`).join(', ')} (single MTA end to end: ${e2e.cpuUsPerMsg} us)`);
  // How often each part's main threads slept and were woken, a message: what batching across messages saves.
  line(`  wake-ups a message by part: ${Object.entries(fleet.wakeupsPerMsg).map(([k, v]) => `${k} ${v}`).join(', ')}`);

  // Issue 20 asks fleet >= 0.6 x e2e. On one machine every hop's CPU comes out of the same two cores: were both runs
  // bound by the cores, the ratio would be what the end-to-end run spends a message (the MTA and the sink) over what
  // the fleet spends (lb, MTAs, proxies, sink); smtp-source, the same in both, is left out of both sides. Neither run
  // keeps both cores busy (the e2e run less so), which is why the measured ratio can sit above this figure.
  const fleetCpu = Object.values(fleet.cpuUsPerMsg).reduce((n, v) => n + v, 0);
  const fleetRatio = fleet.msgsPerSec / e2e.msgsPerSec;
  const fleetCpuRatio = (e2e.cpuUsPerMsg + (fleet.cpuUsPerMsg['smtp-sink'] ?? 0)) / fleetCpu;
  line(`  fleet / end to end ${fleetRatio.toFixed(2)}; CPU a message, end to end over fleet: (${e2e.cpuUsPerMsg} + sink) / ${fleetCpu} us = ${fleetCpuRatio.toFixed(2)}`);
  partial.fleet_msgs_per_s = fleet.msgsPerSec;
  partial.fleet_ratio = Number(fleetRatio.toFixed(2));
  partial.fleet_cpu_ratio = Number(fleetCpuRatio.toFixed(2));
  partial.lb_cpu_us_per_msg = fleet.cpuUsPerMsg.lb;
  partial.proxy_cpu_us_per_msg = fleet.cpuUsPerMsg.proxy;
  partial.proxy_wakeups_per_msg = fleet.wakeupsPerMsg.proxy;
  // The proxy's cost depends on how busy it is (the notebook's curve: ~180 µs a message at the ~250 msg/s a fleet
  // proxy carries on this box, ~50 flat out): the fleet figure above is the first, its capacity is the second.
  stage = 'one proxy alone, flat out';
  const proxyAlone = await measureProxyAlone({ messages: 5_000, warmupMessages: 2_000, sessions: 20, sizeBytes: LOAD.sizeBytes });
  line(`one proxy alone (1 worker, 20 MTA links, as fast as answers come): ${proxyAlone.msgsPerSec} msg/s, ${proxyAlone.cpuUsPerMsg} us CPU a message`);
  partial.proxy_cpu_us_per_msg_flat_out = proxyAlone.cpuUsPerMsg;
  stage = 'spool formats';
  const formats = await measureSpoolFormats();
  line(`spool formats, 2 KB durable writes, 20 writers: segmented log with group commit ${formats.logMsgsPerSec}/s, file per message ${formats.filesMsgsPerSec}/s`);

  stage = 'start-up with a full queue';
  const startup = await measureStartup(STARTUP_MESSAGES);
  line(`start-up with ${startup.queued} queued messages: ready in ${startup.startupS} s, RSS ${startup.rssMb} MB (all MTA processes)`);
  line('  (those messages are all deferred, next retry in a day: the same figure is the RSS of 1M deferred messages)');

  const bench = {
    cores,
    tools_ceiling_msgs_per_s: tools.msgsPerSec,
    node_floor_msgs_per_s: nodeFloor.msgsPerSec,
    node_floor_cpu_us_per_msg: nodeFloor.cpuUsPerMsg,
    intake_msgs_per_s: all.msgsPerSec,
    intake_msgs_per_s_1w: one.msgsPerSec,
    intake_msgs_per_s_2w: two.msgsPerSec,
    intake_workers: all.workers,
    intake_p50_ms: all.p50Ms,
    intake_p99_ms: all.p99Ms,
    intake_cpu_us_per_msg: all.cpuUsPerMsg,
    rss_mb: all.rssMb,
    postfix_intake_msgs_per_s: Math.round(postfix.msgsPerSec),
    intake_vs_postfix: Number((all.msgsPerSec / postfix.msgsPerSec).toFixed(2)),
    e2e_msgs_per_s: e2e.msgsPerSec,
    e2e_cold_msgs_per_s: cold,
    e2e_warmup_messages: WARMUP_MESSAGES,
    e2e_latency300_msgs_per_s: slow.msgsPerSec,
    e2e_latency300_ratio: Number(slowRatio.toFixed(2)),
    e2e_held0_msgs_per_s: held0.msgsPerSec,
    e2e_latency300_vs_held0: Number(slowVsHeld0.toFixed(2)),
    postfix_relay_msgs_per_s: Math.round(relay.msgsPerSec),
    e2e_vs_postfix: Number(vsPostfix.toFixed(2)),
    deferred_1m_rss_mb: startup.rssMb,
    backlog_1conn_rtt20_msgs_per_s: backlog.msgsPerSec,
    backlog_1conn_rtt20_nopipelining_msgs_per_s: backlogNoPipe.msgsPerSec,
    backlog_1conn_rtt20_proxy_msgs_per_s: backlogProxy.msgsPerSec,
    backlog_1conn_rtt20_proxy_ratio: Number((backlogProxy.msgsPerSec / backlog.msgsPerSec).toFixed(2)),
    fleet_msgs_per_s: fleet.msgsPerSec,
    fleet_cpu_us_per_msg: fleet.cpuUsPerMsg,
    fleet_ratio: Number(fleetRatio.toFixed(2)),
    fleet_cpu_ratio: Number(fleetCpuRatio.toFixed(2)),
    // The lb's own figure (every process of it), the one issue 20 sets a bound on.
    lb_cpu_us_per_msg: fleet.cpuUsPerMsg.lb,
    // The proxies' CPU per message on the fleet path (primaries and workers; each message crosses one proxy): issue 20's ≤ 150.
    proxy_cpu_us_per_msg: fleet.cpuUsPerMsg.proxy,
    proxy_cpu_us_per_msg_flat_out: proxyAlone.cpuUsPerMsg,
    fleet_wakeups_per_msg: fleet.wakeupsPerMsg,
    e2e_cpu_us_per_msg: e2e.cpuUsPerMsg,
    proxy_msgs_per_s: viaProxy.msgsPerSec,
    proxy_ratio: Number(proxyRatio.toFixed(2)),
    proxy_added_p50_ms: viaProxy.txP50Ms - e2e.txP50Ms,
    proxy_added_p99_ms: viaProxy.txP99Ms - e2e.txP99Ms,
    spool_log_writes_per_s: formats.logMsgsPerSec,
    spool_files_writes_per_s: formats.filesMsgsPerSec,
    startup_1m_s: startup.startupS,
    startup_1m_rss_mb: startup.rssMb,
    ...events.figures,
    ...workersCpu.figures,
  };
  // The drain (issue 17): 20,000 2 KB messages, one MTA to one destination MTA's drain endpoint.
  stage = 'drain';
  const drained = await measureDrain({ messages: LOAD.messages, sizeBytes: LOAD.sizeBytes });
  partial.drain_msgs_per_s = drained.msgsPerSec;
  line(`drain of ${LOAD.messages} 2 KB messages, one MTA to one destination MTA over HTTPS: ${drained.msgsPerSec} msg/s (move ${drained.moveMs} ms; whole command ${drained.commandMs} ms)`);
  Object.assign(bench, { drain_msgs_per_s: drained.msgsPerSec });
  // The HA mirror (issue 18): async lag at intake load, a full resync, a promotion with a full queue.
  stage = 'mirror';
  Object.assign(bench, await mirrorFigures({ load: LOAD, resyncMb: MIRROR_RESYNC_MB, promoteMessages: MIRROR_PROMOTE_MESSAGES }, partial, line));
  // The HA mirror in mode sync (issue 18): intake waits for the secondary's durable ack; against no mirror, round by round.
  stage = 'intake with a sync mirror';
  const mirrorSync = await measureMirrorSyncIntake({ ...LOAD, rounds: MIRROR_SYNC_ROUNDS }, (i, r) => line(`  mirror sync round ${i + 1} (msg/s): none ${r.none}, sync ${r.sync}`));
  partial.mirror_sync_intake_ratio = mirrorSync.ratio;
  line(`intake with a sync mirror (both nodes on this machine) against none: ${mirrorSync.ratio} round by round (target >= 0.8); barrier latency at the end of each sync run ${mirrorSync.barrierLastMs.join(', ')} ms`);
  for (const l of mirrorSyncCpuLines(mirrorSync)) line(l);
  Object.assign(bench, { mirror_sync_intake_ratio: mirrorSync.ratio });
  line(`BENCH ${JSON.stringify(bench)}`);
  clearTimeout(watchdog);
}

/** The soft open-file limit of this process, from /proc (Infinity if unlimited or unreadable). */
function openFileLimit(): number {
  try {
    const m = /^Max open files\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
  } catch {
    return Infinity;
  }
}

/**
 * A failed run ends the bench: what it has, a FAILED line, a non-zero exit.
 * The exit kills the children left (smtp-source, sinks, MTAs: each is
 * registered for it), so nothing waits on them.
 */
function fail(err: unknown): never {
  const e = err as { code?: string; message?: string; stack?: string };
  line(`BENCH_PARTIAL ${JSON.stringify(partial)}`);
  line(`FAILED at ${stage}: ${e.code ? `[${e.code}] ` : ''}${e.message ?? String(err)}`);
  process.stderr.write(`bench failed: ${e.stack ?? String(err)}\n`);
  process.exit(1);
}

function medianOf(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

function median<T extends { msgsPerSec: number }>(runs: T[]): T {
  return [...runs].sort((a, b) => a.msgsPerSec - b.msgsPerSec)[Math.floor(runs.length / 2)];
}

main().then(
  () => process.exit(0),
  (err: unknown) => fail(err),
);
