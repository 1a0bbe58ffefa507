import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTestConfig } from '../helpers/config';
import { defaultWorkers } from '../../runtime/mta/primary';
import { startMta, type MtaProcess } from '../helpers/mta-process';
import { countersPer, processCounters, processTree, processUsage, type ProcessCounters } from './mta-metrics';
import { runSmtpSource, startSmtpSink } from '../helpers/postfix-tools';
import { startHeldSink } from '../helpers/held-sink';
import { readAttempts } from '../helpers/attempt-log';
import { AttemptWatch, guard, ownMta, runDeadlineMs } from './run-guard';

export interface E2eResult {
  msgsPerSec: number;
  elapsedMs: number;
  intakeMs: number;
  /** Per-delivery transaction time from the attempt log (MAIL..final reply), percentiles in ms. */
  txP50Ms: number;
  txP99Ms: number;
  /** CPU time of the MTA's processes per message, in µs: steadier than msg/s on a shared VM. */
  cpuUsPerMsg: number;
  /** Spool records per durable write over the run: how well group commit batches. */
  recordsPerCommit: number;
  /** The warm-up's own rate: the first messages after the MTA started, JIT still compiling. */
  warmupMsgsPerSec: number;
  /** Each MTA process's counters over the timed run, per timed message (the primary first). */
  processes: { pid: number; role: 'primary' | 'worker'; perMsg: ProcessCounters }[];
}

/**
 * smtp-source → MTA → smtp-sink, fsync on, delivery running: timed from the
 * first injection until the sink has counted every message.
 */
export async function measureEndToEnd(opts: {
  messages: number;
  sessions: number;
  sizeBytes: number;
  /**
   * Deliver to the bench's held sink (held-sink.ts) instead of smtp-sink,
   * holding each end-of-data reply this long (0: the same sink, no hold).
   */
  heldSinkMs?: number;
  workers?: number;
  /**
   * Messages sent (and delivered) before the timed run, default 200. The
   * bench warms with tens of thousands: V8 keeps compiling the hot path for
   * ~20 s after start (see README, Benchmarks), and a run timed before then
   * measures the compiler as much as the MTA.
   */
  warmupMessages?: number;
  /** More config (VMTAs, proxies) and a setup run before the MTA starts. */
  extraConfig?: (dir: string) => Promise<string>;
  /**
   * Run after the timed run, before the MTA stops (untimed): the events bench
   * waits here for its webhook receiver to have the timed run's events, and
   * reads the MTA's sink status.
   */
  afterRun?: (mta: MtaProcess) => Promise<void>;
  /** Names the setup in a failure's report (default "end to end"). */
  label?: string;
  /**
   * An hourly message rate on every destination, set far above the load so
   * it never holds mail: every message then takes a permit from the node's
   * throttles (leased from the primary with several workers).
   */
  messagesPerHour?: number;
  /**
   * Called with the MTA's pids as the timed run starts; what it returns is
   * awaited as it ends (a diagnostic attaching strace or perf to the workers).
   */
  duringTimedRun?: (pids: number[]) => () => Promise<void>;
}): Promise<E2eResult> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-e2e-'));
  const sink = opts.heldSinkMs === undefined ? await startSmtpSink({ maxConnections: 1024, backlog: 1024 }) : await startHeldSink({ holdMs: opts.heldSinkMs, maxConnections: 1024 });
  try {
    // A slow receiver needs many connections in flight to keep the rate up
    // (Little's law: 2,500 msg/s at 300 ms a transaction is 750 open at once;
    // a limit of 600 capped that run below 2,000 msg/s whatever the MTA did):
    // the sink's domain gets a generous connection limit, as an operator would
    // give a partner MX they know.
    const config = writeTestConfig(dir, {
      relayFrom: ['127.0.0.0/8'],
      sinkPort: sink.port,
      concurrency: 1000,
      extra: `throttles:\n  - { destination: "*", max_connections: 1000${opts.messagesPerHour ? `, max_messages_per_hour: ${opts.messagesPerHour}` : ''} }\n` + (opts.extraConfig ? await opts.extraConfig(dir) : ''),
    });
    const workers = opts.workers ?? defaultWorkers();
    const mta = await startMta({ configPath: config, persistentPath: join(dir, 'pp'), workers });
    const stopMta = ownMta(mta);
    // Every message must reach the sink: one the MTA defers comes back in an
    // hour, so the run fails as soon as the attempt log shows one.
    const watch = new AttemptWatch([join(dir, 'pp', 'log', 'events')]);
    const what = opts.label ?? 'end to end';
    try {
      const warmup = opts.warmupMessages ?? 200;
      const w0 = Date.now();
      await guard(`${what}, warm-up`, (async () => {
        const r = await runSmtpSource({ port: mta.smtpPort, messages: warmup, sessions: opts.sessions, sizeBytes: opts.sizeBytes, to: 'warm@bench.example', timeoutMs: runDeadlineMs(warmup) });
        if (r.exitCode !== 0) throw new Error(`${what}, warm-up: smtp-source ${r.timedOut ? 'timed out' : `exited ${r.exitCode ?? r.signal}`}: ${r.stderr.slice(-2000)}`);
        // The guard's deadline comes first; this one only ends the wait it abandons.
        await sink.waitForMessages(warmup, 2 * runDeadlineMs(warmup));
      })(), { deadlineMs: runDeadlineMs(warmup), messages: warmup, watch, progress: () => `the sink has ${sink.messages()} of ${warmup}` });
      const warmupMsgsPerSec = Math.round((warmup * 1000) / (Date.now() - w0));
      const base = sink.messages();
      const pids = processTree(mta.proc.pid!);
      const u0 = processUsage(pids);
      const c0 = pids.map(processCounters);
      const m0 = await spoolCounts(mta.adminUrl);
      const endDiagnostic = opts.duringTimedRun?.(pids);
      const t0 = Date.now();
      let intakeMs = 0;
      await guard(`${what}, timed run`, (async () => {
        const r = await runSmtpSource({ port: mta.smtpPort, messages: opts.messages, sessions: opts.sessions, sizeBytes: opts.sizeBytes, to: 'rcpt@bench.example', timeoutMs: runDeadlineMs(opts.messages) });
        if (r.exitCode !== 0) throw new Error(`${what}, timed run: smtp-source ${r.timedOut ? 'timed out' : `exited ${r.exitCode ?? r.signal}`}: ${r.stderr.slice(-2000)}`);
        intakeMs = Date.now() - t0;
        await sink.waitForMessages(base + opts.messages, 2 * runDeadlineMs(opts.messages));
      })(), { deadlineMs: runDeadlineMs(opts.messages), messages: opts.messages, watch, progress: () => `the sink has ${sink.messages() - base} of ${opts.messages}` });
      const elapsedMs = Date.now() - t0;
      const u1 = processUsage(pids);
      const c1 = pids.map(processCounters);
      await endDiagnostic?.();
      const m1 = await spoolCounts(mta.adminUrl);
      await new Promise((r) => setTimeout(r, 300)); // the last attempt lines
      await opts.afterRun?.(mta);
      const tx = transactionTimes(join(dir, 'pp', 'log', 'events'));
      return { msgsPerSec: Math.round((opts.messages * 1000) / elapsedMs), elapsedMs, intakeMs, txP50Ms: percentile(tx, 0.5), txP99Ms: percentile(tx, 0.99), cpuUsPerMsg: Math.round(((u1.cpuSeconds - u0.cpuSeconds) * 1e6) / opts.messages),
        recordsPerCommit: Number(((m1.records - m0.records) / Math.max(1, m1.commits - m0.commits)).toFixed(2)),
        warmupMsgsPerSec,
        processes: pids.flatMap((pid, i) => {
          const [before, after] = [c0[i], c1[i]];
          return before && after ? [{ pid, role: i === 0 ? ('primary' as const) : ('worker' as const), perMsg: countersPer(before, after, opts.messages) }] : [];
        }),
      };
    } finally {
      await stopMta();
    }
  } finally {
    await sink.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function spoolCounts(adminUrl: string): Promise<{ records: number; commits: number }> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const value = (name: string): number => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { records: value('volley_spool_records_written'), commits: value('volley_spool_fsync_seconds_count') };
}

function transactionTimes(logDir: string): number[] {
  const out: number[] = [];
  for (const e of readAttempts<{ status: string; recipient: string; transaction_ms?: number }>(logDir)) {
    // The timed run's mail only: the warm-up's (warm@) is most of the log.
    if (e.status === 'delivered' && e.recipient === 'rcpt@bench.example' && e.transaction_ms !== undefined) out.push(e.transaction_ms);
  }
  return out.sort((a, b) => a - b);
}

function percentile(sorted: number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}
