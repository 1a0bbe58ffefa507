// `mta_cpu_4w_vs_1w`: the MTA's CPU per message (all its processes, from
// /proc) with 4 workers against 1, same load, run side by side in the same
// rounds. On two cores four workers cannot be faster; the figure says whether
// they cost more per message, i.e. whether the design scales with workers.
import { measureEndToEnd, type E2eResult } from './e2e';

/**
 * Every destination gets this hourly rate, far above any load here: every
 * message takes a permit from the node's throttles, so the run measures the
 * permit path (leased from the primary with several workers, local with one).
 */
export const BENCH_RATE_PER_HOUR = 100_000_000;

export interface WorkersRun extends E2eResult {
  workers: number;
  sessions: number;
  /** Throttle messages the workers sent their primary, per message (warm-up included). */
  throttleIpcPerMsg: number;
}

export async function measureWithWorkers(opts: { workers: number; messages: number; sessions: number; sizeBytes: number; warmupMessages: number; label: string }): Promise<WorkersRun> {
  let ipc = 0;
  const r = await measureEndToEnd({
    ...opts,
    messagesPerHour: BENCH_RATE_PER_HOUR,
    afterRun: async (mta) => {
      const text = await (await fetch(`${mta.adminUrl}/metrics`)).text();
      for (const m of text.matchAll(/^volley_mta_throttle_ipc_total\{[^}]*\} (\S+)$/gm)) ipc += Number(m[1]);
    },
  });
  return { ...r, workers: opts.workers, sessions: opts.sessions, throttleIpcPerMsg: Number((ipc / (opts.messages + opts.warmupMessages)).toFixed(4)) };
}

/** The rounds' figures: the median of the per-round ratios (runs side by side), and the report's lines. */
export function workersCpuFigures(one: WorkersRun[], four: WorkersRun[]): { figures: Record<string, number>; lines: string[] } {
  const ratios = four.map((f, i) => f.cpuUsPerMsg / one[i].cpuUsPerMsg);
  const ratio = medianOf(ratios);
  const list = (rs: WorkersRun[], pick: (r: WorkersRun) => number): string => rs.map(pick).join(', ');
  return {
    figures: {
      mta_cpu_4w_vs_1w: Number(ratio.toFixed(2)),
      mta_cpu_us_per_msg_1w: medianOf(one.map((r) => r.cpuUsPerMsg)),
      mta_cpu_us_per_msg_4w: medianOf(four.map((r) => r.cpuUsPerMsg)),
      mta_throttle_ipc_per_msg_4w: medianOf(four.map((r) => r.throttleIpcPerMsg)),
    },
    lines: [
      `MTA CPU per message, 4 workers against 1 (every message under an hourly rate, so it takes a permit): ${ratio.toFixed(2)} (median of ${ratios.map((x) => x.toFixed(2)).join(', ')}; target <= 1.15)`,
      `  1 worker ${list(one, (r) => r.cpuUsPerMsg)} us/msg (${list(one, (r) => r.msgsPerSec)} msg/s); 4 workers ${list(four, (r) => r.cpuUsPerMsg)} us/msg (${list(four, (r) => r.msgsPerSec)} msg/s), throttle messages to the primary per message ${list(four, (r) => r.throttleIpcPerMsg)}`,
    ],
  };
}

/**
 * Where a run's CPU went: the primary's and the workers' µs per message, the
 * workers' main threads' voluntary context switches (wakeups: /proc/<pid>/status
 * counts the main thread's only) per message and the spool
 * records per durable write (how well its group commits batch).
 */
export function cpuSplit(r: WorkersRun): string {
  const us = (role: 'primary' | 'worker'): number => Math.round(r.processes.filter((p) => p.role === role).reduce((n, p) => n + p.perMsg.userSeconds + p.perMsg.sysSeconds, 0) * 1e6);
  const wakeups = r.processes.filter((p) => p.role === 'worker').reduce((n, p) => n + p.perMsg.voluntarySwitches, 0);
  return `primary ${us('primary')} + workers ${us('worker')} us/msg, workers' main threads' wakeups ${wakeups.toFixed(1)}/msg, ${r.recordsPerCommit} spool records per durable write`;
}

/**
 * `mta_cpu_4w_vs_1w_same_load_per_worker`: 4 workers with four times the
 * sessions against 1 worker, so each worker has the load the single one has
 * and batches as much per wakeup and per group commit. What remains is what
 * the workers cost by being several processes (IPC to the primary, more
 * processes time-sliced on this machine's two cores). See test/bench/README.md.
 */
export function sameLoadPerWorkerFigures(one: WorkersRun[], fourScaled: WorkersRun[]): { figures: Record<string, number>; lines: string[] } {
  const ratios = fourScaled.map((f, i) => f.cpuUsPerMsg / one[i].cpuUsPerMsg);
  const ratio = medianOf(ratios);
  return {
    figures: { mta_cpu_4w_vs_1w_same_load_per_worker: Number(ratio.toFixed(2)), mta_cpu_us_per_msg_4w_same_load_per_worker: medianOf(fourScaled.map((r) => r.cpuUsPerMsg)) },
    lines: [
      `MTA CPU per message, 4 workers with ${fourScaled[0]?.sessions} sessions against 1 with ${one[0]?.sessions} (the same load per worker): ${ratio.toFixed(2)} (median of ${ratios.map((x) => x.toFixed(2)).join(', ')})`,
      `  4 workers ${fourScaled.map((r) => r.cpuUsPerMsg).join(', ')} us/msg (${fourScaled.map((r) => r.msgsPerSec).join(', ')} msg/s)`,
    ],
  };
}

function medianOf(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}
