// `npm run bench:workers`: `mta_cpu_4w_vs_1w` alone, with smaller counts than
// `npm run bench`, for checking a change to the workers' throttle path
// without the whole bench. Rounds of the end-to-end load through an MTA with
// 1 worker and with 4, side by side, and 4 workers with four times the
// sessions (the same load per worker as the single one). Ends with `BENCH {json}`, or
// `BENCH_PARTIAL {json}`, a `FAILED ...` line and a non-zero exit.
// BENCH_MESSAGES (timed, default 10,000), BENCH_WARMUP_MESSAGES (10,000),
// BENCH_ROUNDS (3).
import { availableParallelism, cpus } from 'node:os';
import { runStandalone } from './run-guard';
import { cpuSplit, measureWithWorkers, sameLoadPerWorkerFigures, workersCpuFigures, type WorkersRun } from './workers-cpu';

const LOAD = { messages: Number(process.env.BENCH_MESSAGES ?? 10_000), sessions: 20, sizeBytes: 2048 };
const WARMUP = Number(process.env.BENCH_WARMUP_MESSAGES ?? 10_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const partial: Record<string, unknown> = {};
let stage = 'start-up';
const line = (s: string): boolean => process.stdout.write(`${s}\n`);

async function main(): Promise<void> {
  line(`Volley MTA workers benchmark on ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}`);
  line(`load: ${LOAD.messages} timed messages after ${WARMUP} warm-up, ${LOAD.sizeBytes} bytes, ${LOAD.sessions} sessions; ${ROUNDS} rounds of 1 worker, 4, and 4 with ${4 * LOAD.sessions} sessions`);
  const one: WorkersRun[] = [];
  const four: WorkersRun[] = [];
  const fourScaled: WorkersRun[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    for (const [workers, sessions, into] of [[1, LOAD.sessions, one], [4, LOAD.sessions, four], [4, 4 * LOAD.sessions, fourScaled]] as const) {
      stage = `round ${i + 1}: ${workers} worker(s), ${sessions} sessions`;
      const r = await measureWithWorkers({ ...LOAD, sessions, warmupMessages: WARMUP, workers, label: stage });
      into.push(r);
      line(`  ${stage}: ${r.msgsPerSec} msg/s, MTA CPU ${r.cpuUsPerMsg} us/msg (${cpuSplit(r)}), throttle messages to the primary ${r.throttleIpcPerMsg}/msg`);
    }
    Object.assign(partial, workersCpuFigures(one, four).figures, sameLoadPerWorkerFigures(one, fourScaled).figures);
  }
  const paired = workersCpuFigures(one, four);
  const scaled = sameLoadPerWorkerFigures(one, fourScaled);
  for (const l of [...paired.lines, ...scaled.lines]) line(l);
  line(`BENCH ${JSON.stringify({ cores: availableParallelism(), e2e_timed_messages: LOAD.messages, e2e_warmup_messages: WARMUP, ...paired.figures, ...scaled.figures })}`);
}

runStandalone(main, partial, () => stage);
