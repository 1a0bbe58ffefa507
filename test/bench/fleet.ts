import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VOLLEY } from '../helpers/mta-process';
import { runSmtpSource, startSmtpSink } from '../helpers/postfix-tools';

/**
 * The whole local fleet path, as `npm start` runs it: smtp-source -> lb ->
 * MTA x2 -> proxy x2 -> smtp-sink, timed until the sink has every message.
 */
export async function measureFleet(opts: { messages: number; sessions: number; sizeBytes: number }): Promise<{ msgsPerSec: number; elapsedMs: number }> {
  const data = mkdtempSync(join(tmpdir(), 'volley-fleet-bench-'));
  const sink = await startSmtpSink({ maxConnections: 1024, backlog: 1024 });
  const fleet = spawn(process.execPath, [VOLLEY, 'local', '--data', data, '--no-sink', '--sink-port', String(sink.port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  fleet.stdout.on('data', (d: Buffer) => (out += d.toString()));
  fleet.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((r) => fleet.once('exit', r));
  try {
    const until = Date.now() + 60_000;
    while (!out.includes('Ctrl-C stops everything')) {
      if (Date.now() > until || fleet.exitCode !== null) throw new Error(`fleet did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
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
    fleet.kill('SIGINT');
    await exited;
    await sink.stop();
    rmSync(data, { recursive: true, force: true });
  }
}
