import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalFleet } from '../helpers/local-fleet';
import { runSmtpSource, startSmtpSink } from '../helpers/postfix-tools';

/**
 * The whole local fleet path, as `npm start` runs it: smtp-source -> lb ->
 * MTA x2 -> proxy x2 -> smtp-sink, timed until the sink has every message.
 */
export async function measureFleet(opts: { messages: number; sessions: number; sizeBytes: number }): Promise<{ msgsPerSec: number; elapsedMs: number }> {
  const data = mkdtempSync(join(tmpdir(), 'volley-fleet-bench-'));
  const sink = await startSmtpSink({ maxConnections: 1024, backlog: 1024 });
  let fleet: Awaited<ReturnType<typeof startLocalFleet>> | undefined;
  try {
    fleet = await startLocalFleet(['--data', data, '--no-sink', '--sink-port', String(sink.port)]);
    await runSmtpSource({ port: 2525, messages: 200, sessions: opts.sessions, sizeBytes: opts.sizeBytes });
    await sink.waitForMessages(200, 60_000);
    const base = sink.messages();
    const t0 = Date.now();
    const r = await runSmtpSource({ port: 2525, messages: opts.messages, sessions: opts.sessions, sizeBytes: opts.sizeBytes, timeoutMs: 600_000 });
    if (r.exitCode !== 0) throw new Error(`smtp-source failed (${r.exitCode}): ${r.stderr}`);
    await sink.waitForMessages(base + opts.messages, 600_000);
    const elapsedMs = Date.now() - t0;
    return { msgsPerSec: Math.round((opts.messages * 1000) / elapsedMs), elapsedMs };
  } finally {
    await fleet?.stop();
    await sink.stop();
    rmSync(data, { recursive: true, force: true });
  }
}
