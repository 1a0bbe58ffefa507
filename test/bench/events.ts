// The events figures of the bench (issue 16): the end-to-end load with a
// webhook and an SQLite sink enabled (its rate against the plain run of the
// same round, and the lag from each attempt to its webhook receipt), and the
// webhook sink's own delivery rate to a local receiver from a pre-written log.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventFileName, eventsDir } from '../../runtime/mta/events/event-log';
import { ADMIN_AUTH, writeTestConfig } from '../helpers/config';
import { startMta, type MtaProcess } from '../helpers/mta-process';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver';
import { measureEndToEnd, type E2eResult } from './e2e';
import { processTree, processUsage } from './mta-metrics';
import { guard, ownMta, runDeadlineMs } from './run-guard';

/** The recipient of the e2e bench's timed run (its warm-up goes to warm@): only its events are timed for the lag. */
const TIMED_RECIPIENT = 'rcpt@bench.example';
/** The issue's batch size for the webhook figure, and the sink's default. */
export const WEBHOOK_BATCH = 500;

export interface EventsE2eResult extends E2eResult {
  /** Attempt (`time` of the event) to the receiver's receipt, over the timed run's events, ms. */
  lagP50Ms: number;
  lagP99Ms: number;
  lagMaxMs: number;
  /** The SQLite sink at the end of the timed run: events written, events still waiting. */
  sqliteEvents: number;
  sqliteWaiting: number;
}

/** The sinks' YAML: a webhook to `receiver` (batches of 500) and an SQLite sink, both taking every event. */
function sinksYaml(receiver: WebhookReceiver): string {
  return 'events:\n  sinks:\n' +
    `    - { name: hook, type: webhook, url: "${receiver.url}", secret_files: [${receiver.secretFiles[0]}], ca_file: ${receiver.caFile}, batch_size: ${WEBHOOK_BATCH} }\n` +
    '    - { name: acct, type: sqlite }\n';
}

/**
 * The end-to-end load (measureEndToEnd) with a webhook sink to a local HTTPS
 * receiver (signature check and bodies off: the receiver's own work is not
 * what is measured) and an SQLite sink. After the timed run, untimed, it
 * waits for the receiver to have every event of it, and takes the lag of each.
 */
export async function measureEndToEndWithEvents(opts: { messages: number; sessions: number; sizeBytes: number; warmupMessages?: number; label?: string }): Promise<EventsE2eResult> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-events-'));
  const lags: number[] = [];
  const receiver = await startWebhookReceiver({
    dir,
    verify: false,
    keepBodies: false,
    onAccepted: (events, receivedAt) => {
      for (const e of events) if (e.recipient === TIMED_RECIPIENT) lags.push(receivedAt - Date.parse(String(e.time)));
    },
  });
  let sqlite = { events: NaN, waiting: NaN };
  try {
    const what = opts.label ?? 'end to end with events';
    const result = await measureEndToEnd({
      ...opts,
      label: what,
      extraConfig: async () => sinksYaml(receiver),
      afterRun: async (mta) => {
        sqlite = await sinkStatus(mta, 'acct');
        // A minute is generous: at the e2e load the sink is seconds behind at most.
        await guard(`${what}, webhook catching up`, waitFor(() => lags.length >= opts.messages), {
          deadlineMs: 60_000,
          messages: opts.messages,
          progress: () => `the receiver has ${lags.length} of the timed run's ${opts.messages} events`,
        });
      },
    });
    lags.sort((a, b) => a - b);
    return { ...result, lagP50Ms: quantile(lags, 0.5), lagP99Ms: quantile(lags, 0.99), lagMaxMs: lags.at(-1) ?? NaN, sqliteEvents: sqlite.events, sqliteWaiting: sqlite.waiting };
  } finally {
    await receiver.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface WebhookRateResult {
  events: number;
  /** Events per second between the first batch's receipt and the last's. */
  eventsPerSec: number;
  /** From the MTA's spawn to the last receipt (start-up included), ms. */
  fromStartMs: number;
  /** The MTA's CPU (primary and worker) per event over the whole run, µs. */
  cpuUsPerEvent: number;
  /** The bench process's CPU per event while it waited: the receiver's (TLS, JSON), µs. */
  receiverCpuUsPerEvent: number;
  batches: number;
}

/**
 * The webhook sink's delivery rate: `events` delivery events are written into
 * the event log of a fresh persistent path (one producer file, as a worker
 * writes them) with the sink's cursor at its start, then an MTA primary is
 * started on it with no mail, and the receiver (signature check and bodies
 * off) counts them. Each event must arrive once.
 */
export async function measureWebhookRate(opts: { events: number; batchSize?: number }): Promise<WebhookRateResult> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-webhook-rate-'));
  let received = 0;
  let first = 0;
  let last = 0;
  let batches = 0;
  const receiver = await startWebhookReceiver({
    dir,
    verify: false,
    keepBodies: false,
    onAccepted: (events, at) => {
      received += events.length;
      batches++;
      if (first === 0) first = at;
      last = at;
    },
  });
  try {
    const pp = join(dir, 'pp');
    prewriteEvents(eventsDir(pp), opts.events);
    const config = writeTestConfig(dir, {
      extra: 'events:\n  sinks:\n' +
        `    - { name: hook, type: webhook, url: "${receiver.url}", secret_files: [${receiver.secretFiles[0]}], ca_file: ${receiver.caFile}, batch_size: ${opts.batchSize ?? WEBHOOK_BATCH} }\n`,
    });
    const started = Date.now();
    const mta = await startMta({ configPath: config, persistentPath: pp, workers: 1 });
    const stop = ownMta(mta);
    try {
      const pids = processTree(mta.proc.pid!);
      const own = process.cpuUsage();
      await guard('webhook delivery rate', waitFor(() => received >= opts.events), {
        deadlineMs: runDeadlineMs(opts.events, 1000),
        messages: opts.events,
        progress: () => `the receiver has ${received} of ${opts.events} events`,
      });
      const cpu = processUsage(pids).cpuSeconds;
      const ownUs = process.cpuUsage(own);
      const unique = receiver.acceptedCounts();
      if (unique.size !== opts.events || received !== opts.events) throw new Error(`webhook delivery rate: ${received} events received, ${unique.size} distinct, of ${opts.events} written`);
      const firstBatch = Math.min(opts.batchSize ?? WEBHOOK_BATCH, opts.events);
      return {
        events: opts.events,
        eventsPerSec: Math.round(((opts.events - firstBatch) * 1000) / Math.max(1, last - first)),
        fromStartMs: last - started,
        cpuUsPerEvent: Math.round((cpu * 1e6) / opts.events),
        receiverCpuUsPerEvent: Math.round((ownUs.user + ownUs.system) / opts.events),
        batches,
      };
    } finally {
      await stop();
    }
  } finally {
    await receiver.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `count` delivery events shaped like the attempt recorder's (~700 bytes),
 * in one file of a producer named `bench`, and the sink `hook`'s cursor at
 * its start: a new sink would otherwise start at the end of the log.
 */
function prewriteEvents(dir: string, count: number): void {
  mkdirSync(join(dir, 'cursors'), { recursive: true });
  const file = eventFileName('bench', Date.now(), 1);
  const now = Date.now();
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    lines.push(JSON.stringify({
      time: new Date(now - count + i).toISOString(), event: 'delivery', status: 'delivered', message_id: `bench-${i.toString(36)}`, attempt: 1,
      sender: 'sender@bench.example', recipient: `r${i}@bench.example`, domain: 'bench.example', vmta: 'v1', pool: 'p1', sending_ip: '127.0.0.1',
      helo: 'v1.test.example', mx_host: '127.0.0.1', mx_ip: '127.0.0.1', smtp_code: 250, enhanced_code: '2.0.0', smtp_text: `2.0.0 Ok: queued as ${i.toString(16).toUpperCase()}`,
      time_in_queue_ms: 12, connect_ms: 1, transaction_ms: 2, size: 2048, node: 'bench-node', event_id: randomUUID(),
    }));
  }
  writeFileSync(join(dir, file), `${lines.join('\n')}\n`);
  writeFileSync(join(dir, 'cursors', 'hook.json'), `${JSON.stringify({ sink: 'hook', updated: new Date().toISOString(), producers: { bench: { file, offset: 0 } } })}\n`);
}

/** A sink's events written and waiting, from the MTA's admin API. */
async function sinkStatus(mta: MtaProcess, sink: string): Promise<{ events: number; waiting: number }> {
  const res = await fetch(`${mta.adminUrl}/events/status`, { headers: ADMIN_AUTH });
  const body = (await res.json()) as { sinks: { sink: string; deliveredEvents: number; waitingEvents: number }[] };
  const s = body.sinks.find((x) => x.sink === sink);
  return { events: s?.deliveredEvents ?? NaN, waiting: s?.waitingEvents ?? NaN };
}

/** Resolves once `done()` holds, looking every 20 ms (the guard around it bounds the wait). */
function waitFor(done: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const t = setInterval(() => {
      if (!done()) return;
      clearInterval(t);
      resolve();
    }, 20);
  });
}

function quantile(sorted: number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/**
 * The figures from paired rounds: `events[j]` ran in the same round as
 * `direct[j]`. The ratio is the median of the rounds' ratios (as the proxy
 * ratio); the lag p99 the median of the runs' p99s.
 */
export function eventsFigures(direct: E2eResult[], events: EventsE2eResult[], webhook?: WebhookRateResult): { figures: Record<string, number>; lines: string[] } {
  const ratios = events.map((e, j) => e.msgsPerSec / direct[j].msgsPerSec);
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const figures: Record<string, number> = {};
  const lines: string[] = [];
  if (events.length > 0) {
    const rate = med(events.map((e) => e.msgsPerSec));
    figures.e2e_events_msgs_per_s = rate;
    figures.e2e_events_ratio = Number(med(ratios).toFixed(2));
    figures.e2e_events_cpu_us_per_msg = med(events.map((e) => e.cpuUsPerMsg));
    figures.events_lag_p50_ms = med(events.map((e) => e.lagP50Ms));
    figures.events_lag_p99_ms = med(events.map((e) => e.lagP99Ms));
    figures.events_lag_max_ms = Math.max(...events.map((e) => e.lagMaxMs));
    lines.push(`end to end with a webhook and an SQLite sink: ${rate} msg/s (median of ${events.map((e) => e.msgsPerSec).join(', ')}) = ${figures.e2e_events_ratio.toFixed(2)} of direct round by round (rounds ${ratios.map((r) => r.toFixed(2)).join(', ')}); MTA CPU ${figures.e2e_events_cpu_us_per_msg} us/msg (direct ${med(direct.map((d) => d.cpuUsPerMsg))})`);
    lines.push(`  attempt -> webhook receipt lag: p50 ${figures.events_lag_p50_ms} ms, p99 ${figures.events_lag_p99_ms} ms (runs' p99 ${events.map((e) => e.lagP99Ms).join(', ')}; max ${figures.events_lag_max_ms} ms); SQLite sink at the end of each timed run: ${events.map((e) => `${e.sqliteEvents} written, ${e.sqliteWaiting} waiting`).join('; ')}`);
  }
  if (webhook) {
    figures.events_webhook_per_s = webhook.eventsPerSec;
    figures.events_webhook_cpu_us_per_event = webhook.cpuUsPerEvent;
    figures.events_webhook_receiver_cpu_us_per_event = webhook.receiverCpuUsPerEvent;
    lines.push(`webhook delivery to a local receiver, batches of ${WEBHOOK_BATCH}: ${webhook.eventsPerSec} events/s (${webhook.events} events in ${webhook.batches} batches; ${webhook.fromStartMs} ms from the MTA's start; MTA CPU ${webhook.cpuUsPerEvent} us/event, the receiver's ${webhook.receiverCpuUsPerEvent})`);
  }
  return { figures, lines };
}
