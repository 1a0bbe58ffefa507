// The proxy alone (proxy-alone.ts), N rounds, for paired runs of two builds:
// `npm run build && npx tsx test/bench/run-proxy-alone.ts` in each tree in
// turn. BENCH_MESSAGES (5,000), BENCH_WARMUP_MESSAGES (2,000), BENCH_SESSIONS
// (20), BENCH_RATE (msg/s in all; 0: as fast as answers come; default 250,
// a fleet proxy's load), BENCH_ROUNDS (1), BENCH_BARE=1 for the bare relay
// (bare-relay.ts, the floor) instead of `volley proxy`. Ends with `BENCH {json}`.
import { availableParallelism, loadavg } from 'node:os';
import { measureBareRelay, measureProxyAlone } from './proxy-alone';
import { runStandalone } from './run-guard';

const partial = { runs: [] as Record<string, unknown>[] };

async function main(): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
  const rate = Number(process.env.BENCH_RATE ?? 250);
  const load = {
    messages: Number(process.env.BENCH_MESSAGES ?? 5_000),
    warmupMessages: Number(process.env.BENCH_WARMUP_MESSAGES ?? 2_000),
    sessions: Number(process.env.BENCH_SESSIONS ?? 20),
    sizeBytes: 2048,
    ...(rate > 0 ? { ratePerSec: rate } : {}),
  };
  const runs = partial.runs;
  for (let i = 0; i < rounds; i++) {
    // BENCH_BARE=1: the bare relay instead, the floor under the proxy's figure.
    const r = process.env.BENCH_BARE === '1' ? await measureBareRelay(load) : await measureProxyAlone(load);
    const load1 = loadavg()[0].toFixed(1);
    process.stdout.write(`round ${i + 1}: ${r.msgsPerSec} msg/s, proxy ${r.cpuUsPerMsg} µs CPU a message (primary ${r.primaryUsPerMsg}), load ${load1}\n`);
    runs.push({ msgs_per_s: r.msgsPerSec, proxy_cpu_us_per_msg: r.cpuUsPerMsg, primary_cpu_us_per_msg: r.primaryUsPerMsg, load1 });
  }
  process.stdout.write(`BENCH ${JSON.stringify({ cores: availableParallelism(), rate, runs })}\n`);
}

// The rounds done so far, printed as BENCH_PARTIAL if one fails.
runStandalone(main, partial, () => `round ${partial.runs.length + 1}`);
