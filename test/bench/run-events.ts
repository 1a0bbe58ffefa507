// `npm run bench:events`: the events figures alone (issue 16), with smaller
// counts than `npm run bench`, for checking a change to the events path
// without the whole bench's 10+ minutes. Rounds of a plain end-to-end run and
// one with a webhook and an SQLite sink side by side, then the webhook
// delivery rate once. Ends with `BENCH {json}`, or `BENCH_PARTIAL {json}`
// and a `FAILED ...` line and a non-zero exit.
// BENCH_MESSAGES (timed, default 10,000), BENCH_WARMUP_MESSAGES (10,000),
// BENCH_ROUNDS (3), BENCH_WEBHOOK_EVENTS (200,000).
import { availableParallelism, cpus } from 'node:os';
import { runStandalone } from './run-guard';
import { measureEndToEnd, type E2eResult } from './e2e';
import { eventsFigures, measureEndToEndWithEvents, measureWebhookRate, type EventsE2eResult } from './events';

const LOAD = { messages: Number(process.env.BENCH_MESSAGES ?? 10_000), sessions: 20, sizeBytes: 2048 };
const WARMUP = Number(process.env.BENCH_WARMUP_MESSAGES ?? 10_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WEBHOOK_EVENTS = Number(process.env.BENCH_WEBHOOK_EVENTS ?? 200_000);

const partial: Record<string, unknown> = {};
let stage = 'start-up';
const line = (s: string): boolean => process.stdout.write(`${s}\n`);

async function main(): Promise<void> {
  line(`Volley events benchmark on ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}`);
  line(`load: ${LOAD.messages} timed messages after ${WARMUP} warm-up, ${LOAD.sizeBytes} bytes, ${LOAD.sessions} sessions; ${ROUNDS} rounds of direct and with events; webhook rate over ${WEBHOOK_EVENTS} events`);
  const pairLoad = { ...LOAD, warmupMessages: WARMUP };
  const direct: E2eResult[] = [];
  const withEvents: EventsE2eResult[] = [];
  const rounds: Record<string, number>[] = [];
  partial.e2e_rounds = rounds;
  for (let i = 0; i < ROUNDS; i++) {
    const round: Record<string, number> = {};
    rounds.push(round);
    stage = `round ${i + 1}: direct`;
    direct.push(await measureEndToEnd({ ...pairLoad, label: stage }));
    round.direct = direct[i].msgsPerSec;
    stage = `round ${i + 1}: with events`;
    withEvents.push(await measureEndToEndWithEvents({ ...pairLoad, label: stage }));
    round.events = withEvents[i].msgsPerSec;
    round.lag_p99_ms = withEvents[i].lagP99Ms;
    line(`  round ${i + 1}: direct ${round.direct} msg/s, with events ${round.events} msg/s, lag p99 ${round.lag_p99_ms} ms`);
  }
  Object.assign(partial, eventsFigures(direct, withEvents).figures);
  stage = 'webhook delivery rate';
  const webhook = await measureWebhookRate({ events: WEBHOOK_EVENTS });
  const { figures, lines } = eventsFigures(direct, withEvents, webhook);
  if (direct.length > 0) line(`end to end, direct: median ${[...direct].map((d) => d.msgsPerSec).sort((a, b) => a - b)[Math.floor(direct.length / 2)]} msg/s (${direct.map((d) => d.msgsPerSec).join(', ')})`);
  for (const l of lines) line(l);
  line(`BENCH ${JSON.stringify({ cores: availableParallelism(), e2e_timed_messages: LOAD.messages, e2e_warmup_messages: WARMUP, e2e_rounds: rounds, ...figures })}`);
}

runStandalone(main, partial, () => stage);
