// The local fleet piece of `npm run bench` alone (smtp-source -> lb -> MTA x2
// -> proxy x2 -> smtp-sink), N rounds, for paired runs of two builds: run it
// in each build's tree in turn (`npm run build && npx tsx
// test/bench/run-fleet.ts`), as issue 20's proxy_cpu_us_per_msg is compared.
// BENCH_MESSAGES (3,000), BENCH_ROUNDS (1). Ends with `BENCH {json}`: each
// round's msg/s and CPU µs a message by part (proxy, lb, mta, ...).
import { availableParallelism, loadavg } from 'node:os';
import { measureFleet } from './fleet';
import { runStandalone } from './run-guard';

const partial = { runs: [] as Record<string, unknown>[] };

async function main(): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
  const load = { messages: Number(process.env.BENCH_MESSAGES ?? 3_000), sessions: 20, sizeBytes: 2048 };
  const runs = partial.runs;
  for (let i = 0; i < rounds; i++) {
    const r = await measureFleet(load);
    const load1 = loadavg()[0].toFixed(1);
    process.stdout.write(`round ${i + 1}: ${r.msgsPerSec} msg/s, CPU µs a message ${JSON.stringify(r.cpuUsPerMsg)}, wake-ups a message ${JSON.stringify(r.wakeupsPerMsg)}, load ${load1}\n`);
    runs.push({ fleet_msgs_per_s: r.msgsPerSec, cpu_us_per_msg: r.cpuUsPerMsg, wakeups_per_msg: r.wakeupsPerMsg, load1 });
  }
  process.stdout.write(`BENCH ${JSON.stringify({ cores: availableParallelism(), runs })}\n`);
}

// The rounds done so far, printed as BENCH_PARTIAL if one fails.
runStandalone(main, partial, () => `round ${partial.runs.length + 1}`);
