import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { getFreePort, runSmtpSource, startSmtpSink } from '../helpers/postfix-tools';
import { processUsage } from './mta-metrics';
import { runDeadlineMs } from './run-guard';

export interface FloorResult {
  msgsPerSec: number;
  /** CPU of the receiving process per message (smtp-sink, or the bare Node responder). */
  cpuUsPerMsg: number;
}

type Load = { messages: number; sessions: number; sizeBytes: number };

/**
 * smtp-source straight into smtp-sink: the load tools' own ceiling on this
 * machine, with nothing of Volley's in between.
 */
export async function measureToolsCeiling(load: Load): Promise<FloorResult> {
  const sink = await startSmtpSink({ maxConnections: 1024, backlog: 1024 });
  try {
    return await timedLoad(sink.port, sink.pid, load, (total) => sink.waitForMessages(total, runDeadlineMs(load.messages)).then(() => undefined));
  } finally {
    await sink.stop();
  }
}

/**
 * smtp-source into a bare Node SMTP responder (bare-responder.ts): the
 * per-connection cost of Node's sockets alone, the floor under the MTA's
 * intake figure (which adds parsing, checks and the durable write).
 */
export async function measureNodeFloor(load: Load): Promise<FloorResult> {
  const port = await getFreePort();
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'bare-responder.ts'), String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`bare responder exited (${code})`)));
    });
    return await timedLoad(port, child.pid!, load);
  } finally {
    child.kill('SIGTERM');
  }
}

/**
 * A warm-up of 500 messages, then the load, timed until the receiver has them
 * all (`received(total)`, when it can tell), with its CPU per message.
 */
async function timedLoad(port: number, pid: number, load: Load, received?: (total: number) => Promise<void>): Promise<FloorResult> {
  await runSmtpSource({ port, messages: 500, sessions: load.sessions, sizeBytes: load.sizeBytes });
  await received?.(500);
  const u0 = processUsage([pid]);
  const t0 = Date.now();
  const r = await runSmtpSource({ port, messages: load.messages, sessions: load.sessions, sizeBytes: load.sizeBytes, timeoutMs: runDeadlineMs(load.messages) });
  if (r.exitCode !== 0) throw new Error(`smtp-source failed (${r.exitCode}): ${r.stderr}`);
  await received?.(500 + load.messages);
  const elapsed = Date.now() - t0;
  const u1 = processUsage([pid]);
  return { msgsPerSec: Math.round((load.messages * 1000) / elapsed), cpuUsPerMsg: Math.round(((u1.cpuSeconds - u0.cpuSeconds) * 1e6) / load.messages) };
}
