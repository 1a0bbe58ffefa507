// `npm run bench:e2e`: the end-to-end run alone (smtp-source -> MTA ->
// smtp-sink, fsync on, after a warm-up), N rounds, for comparing two builds
// by paired runs: run it in each build's tree in turn, the same rounds
// (issue 19: the delivery core's split "within the machine's noise").
// BENCH_MESSAGES (10,000), BENCH_WARMUP_MESSAGES (10,000), BENCH_ROUNDS (1).
// Ends with `BENCH {json}`: each round's msg/s and MTA CPU µs a message.
import { availableParallelism } from 'node:os';
import { measureEndToEnd } from './e2e';
import { runStandalone } from './run-guard';

const partial = { runs: [] as Record<string, unknown>[] };

async function main(): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
  const load = { messages: Number(process.env.BENCH_MESSAGES ?? 10_000), sessions: 20, sizeBytes: 2048, warmupMessages: Number(process.env.BENCH_WARMUP_MESSAGES ?? 10_000) };
  const runs = partial.runs;
  for (let i = 0; i < rounds; i++) {
    const r = await measureEndToEnd({ ...load, label: `end to end, round ${i + 1}` });
    process.stdout.write(`round ${i + 1}: ${r.msgsPerSec} msg/s, ${r.cpuUsPerMsg} µs CPU a message, transaction p50 ${r.txP50Ms} ms\n`);
    runs.push({ e2e_msgs_per_s: r.msgsPerSec, e2e_cpu_us_per_msg: r.cpuUsPerMsg });
  }
  process.stdout.write(`BENCH ${JSON.stringify({ cores: availableParallelism(), runs })}\n`);
}

// The rounds done so far, printed as BENCH_PARTIAL if one fails.
runStandalone(main, partial, () => `round ${partial.runs.length + 1}`);
