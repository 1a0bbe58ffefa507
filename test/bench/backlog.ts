import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_AUTH, writeTestConfig } from '../helpers/config';
import { startLatencyRelay } from '../helpers/latency-relay';
import { startMta } from '../helpers/mta-process';
import { runSmtpSource, startSmtpSink } from '../helpers/postfix-tools';
import { startBenchProxy, type BenchProxy } from './proxy';
import { AttemptWatch, guard, ownMta, runDeadlineMs } from './run-guard';

export interface BacklogResult {
  msgsPerSec: number;
  elapsedMs: number;
}

/**
 * A backlog to one destination over one connection (max_connections: 1),
 * 2 × oneWayMs of round trip away: what a per-destination connection limit
 * makes count. `pipelining: false` starts smtp-sink with -p (no PIPELINING
 * offered), so each message costs two round trips instead of one.
 * `viaProxy` puts a `volley proxy` process between the MTA and the relay
 * (the sending IP held there): the MX leg is the proxy's, and the link
 * pipelines transactions as the direct path does (codec.ts, PIPELINING).
 */
export async function measureBacklogDrain(opts: { messages: number; sizeBytes: number; oneWayMs: number; pipelining: boolean; viaProxy?: boolean }): Promise<BacklogResult> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-backlog-'));
  const sink = await startSmtpSink({ maxConnections: 16, extraArgs: opts.pipelining ? [] : ['-p'] });
  const relay = await startLatencyRelay({ host: '127.0.0.1', port: sink.port }, opts.oneWayMs);
  let proxy: BenchProxy | undefined;
  try {
    proxy = opts.viaProxy ? await startBenchProxy(dir) : undefined;
    const config = writeTestConfig(dir, { relayFrom: ['127.0.0.0/8'], sinkPort: relay.port, extra: `throttles:\n  - { destination: "*", max_connections: 1 }\n${proxy?.mtaConfig ?? ''}` });
    const mta = await startMta({ configPath: config, persistentPath: join(dir, 'pp'), workers: 1 });
    const stopMta = ownMta(mta);
    try {
      await fetch(`${mta.adminUrl}/queue/pause`, { method: 'POST', headers: ADMIN_AUTH });
      const r = await runSmtpSource({ port: mta.smtpPort, messages: opts.messages, sessions: 10, sizeBytes: opts.sizeBytes, to: 'rcpt@bench.example', timeoutMs: 300_000 });
      if (r.exitCode !== 0) throw new Error(`smtp-source failed (${r.exitCode}): ${r.stderr}`);
      const t0 = Date.now();
      await fetch(`${mta.adminUrl}/queue/resume`, { method: 'POST', headers: ADMIN_AUTH });
      // One connection, one to four round trips of 20 ms a message: 12 msg/s at the slowest, so 4 msg/s is generous.
      const deadlineMs = runDeadlineMs(opts.messages, 4);
      const what = `backlog over one connection${opts.viaProxy ? ' through a proxy' : ''}${opts.pipelining ? '' : ', no PIPELINING'}`;
      await guard(what, sink.waitForMessages(opts.messages, 2 * deadlineMs), { deadlineMs, messages: opts.messages, watch: new AttemptWatch([join(dir, 'pp', 'log', 'events')]), progress: () => `the sink has ${sink.messages()} of ${opts.messages}` });
      const elapsedMs = Date.now() - t0;
      return { msgsPerSec: Math.round((opts.messages * 1000) / elapsedMs), elapsedMs };
    } finally {
      await stopMta();
    }
  } finally {
    proxy?.stop();
    await relay.close();
    await sink.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
