import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetEndpoints, startLocalFleet } from '../helpers/local-fleet';
import { runSmtpSource, startSmtpSink } from '../helpers/postfix-tools';
import { childrenByParent, commandLine } from '../helpers/procs';
import { processUsage, wakeups } from './mta-metrics';
import { AttemptWatch, guard, runDeadlineMs } from './run-guard';

/**
 * The whole local fleet path, as `npm start` runs it: smtp-source -> lb ->
 * MTA x2 -> proxy x2 -> smtp-sink, timed until the sink has every message.
 */
export interface FleetResult {
  msgsPerSec: number;
  elapsedMs: number;
  /** CPU per message of each part of the fleet (µs): where the two cores go. */
  cpuUsPerMsg: Record<string, number>;
  /** Wake-ups of each part's main threads a message (mta-metrics.ts `wakeups`; not the sink, which is not Node). */
  wakeupsPerMsg: Record<string, number>;
}

export async function measureFleet(opts: { messages: number; sessions: number; sizeBytes: number }): Promise<FleetResult> {
  const data = mkdtempSync(join(tmpdir(), 'volley-fleet-bench-'));
  const sink = await startSmtpSink({ maxConnections: 1024, backlog: 1024 });
  let fleet: Awaited<ReturnType<typeof startLocalFleet>> | undefined;
  try {
    // Free ports, read back from what it prints: never the README's, which a developer's `volley local` may hold.
    fleet = await startLocalFleet(['--data', data, '--port-base', 'auto', '--no-sink', '--sink-port', String(sink.port)]);
    const port = fleetEndpoints(fleet.output()).smtp;
    // The fleet's MTAs keep their attempt logs under the data folder (mta-1, mta-2).
    const watch = new AttemptWatch(['mta-1', 'mta-2'].map((m) => join(data, m, 'log', 'events')));
    await guard('local fleet, warm-up', (async () => {
      const r = await runSmtpSource({ port, messages: 200, sessions: opts.sessions, sizeBytes: opts.sizeBytes, timeoutMs: runDeadlineMs(200) });
      if (r.exitCode !== 0) throw new Error(`local fleet, warm-up: smtp-source failed (${r.exitCode}): ${r.stderr}`);
      await sink.waitForMessages(200, 2 * runDeadlineMs(200));
    })(), { deadlineMs: runDeadlineMs(200), messages: 200, watch, progress: () => `the sink has ${sink.messages()} of 200` });
    const base = sink.messages();
    const parts = fleetParts(fleet.pid);
    const before = new Map([...parts].map(([name, pids]) => [name, processUsage(pids).cpuSeconds]));
    const sinkBefore = processUsage([sink.pid]).cpuSeconds;
    const wakeupsBefore = new Map([...parts].map(([name, pids]) => [name, wakeups(pids)]));
    const t0 = Date.now();
    await guard('local fleet, timed run', (async () => {
      const r = await runSmtpSource({ port, messages: opts.messages, sessions: opts.sessions, sizeBytes: opts.sizeBytes, timeoutMs: runDeadlineMs(opts.messages) });
      if (r.exitCode !== 0) throw new Error(`local fleet: smtp-source failed (${r.exitCode}): ${r.stderr}`);
      await sink.waitForMessages(base + opts.messages, 2 * runDeadlineMs(opts.messages));
    })(), { deadlineMs: runDeadlineMs(opts.messages), messages: opts.messages, watch, progress: () => `the sink has ${sink.messages() - base} of ${opts.messages}` });
    const elapsedMs = Date.now() - t0;
    const perMsg = (seconds: number): number => Math.round((seconds * 1e6) / opts.messages);
    const cpuUsPerMsg: Record<string, number> = {};
    for (const [name, pids] of parts) cpuUsPerMsg[name] = perMsg(processUsage(pids).cpuSeconds - before.get(name)!);
    cpuUsPerMsg['smtp-sink'] = perMsg(processUsage([sink.pid]).cpuSeconds - sinkBefore);
    const wakeupsPerMsg: Record<string, number> = {};
    for (const [name, pids] of parts) wakeupsPerMsg[name] = Number(((wakeups(pids) - wakeupsBefore.get(name)!) / opts.messages).toFixed(2));
    return { msgsPerSec: Math.round((opts.messages * 1000) / elapsedMs), elapsedMs, cpuUsPerMsg, wakeupsPerMsg };
  } finally {
    await fleet?.stop();
    await sink.stop();
    rmSync(data, { recursive: true, force: true });
  }
}

/** The fleet's processes by part (lb, mta, proxy, local), from /proc: descendants of `volley local`. */
function fleetParts(root: number): Map<string, number[]> {
  const children = childrenByParent();
  const parts = new Map<string, number[]>();
  const visit = (pid: number): void => {
    let part = 'local';
    try {
      const argv = commandLine(pid);
      part = argv[argv.findIndex((a) => a.endsWith('volley.js')) + 1] ?? 'local';
    } catch {
      // gone
    }
    parts.set(part, [...(parts.get(part) ?? []), pid]);
    for (const c of children.get(pid) ?? []) visit(c);
  };
  visit(root);
  return parts;
}
