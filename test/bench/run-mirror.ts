// `npm run bench:mirror`: the HA mirror's figures alone (issue 18), both
// nodes of the pair on this machine: the async lag at intake load, a full
// resync's rate and an unplanned promotion with a large queue. The same
// runs end `npm run bench`. Ends with `BENCH {json}`, or `BENCH_PARTIAL
// {json}` and a `FAILED ...` line and a non-zero exit.
// BENCH_MESSAGES (the intake load, default 20,000), BENCH_MIRROR_RESYNC_MB
// (512), BENCH_MIRROR_PROMOTE_MESSAGES (1,000,000).
import { availableParallelism, cpus } from 'node:os';
import { mirrorFigures } from './mirror-figures';
import { runStandalone } from './run-guard';

const partial: Record<string, unknown> = {};
const line = (s: string): boolean => process.stdout.write(`${s}\n`);

async function main(): Promise<void> {
  line(`Volley mirror benchmark on ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}`);
  const figures = await mirrorFigures(
    {
      load: { messages: Number(process.env.BENCH_MESSAGES ?? 20_000), sessions: 20, sizeBytes: 2048 },
      resyncMb: Number(process.env.BENCH_MIRROR_RESYNC_MB ?? 512),
      promoteMessages: Number(process.env.BENCH_MIRROR_PROMOTE_MESSAGES ?? 1_000_000),
    },
    partial,
    line,
  );
  line(`BENCH ${JSON.stringify({ cores: availableParallelism(), ...figures })}`);
}

runStandalone(main, partial, () => String(partial.stage ?? 'start-up'));
