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
  return { ...r, workers: opts.workers, throttleIpcPerMsg: Number((ipc / (opts.messages + opts.warmupMessages)).toFixed(4)) };
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

function medianOf(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}
