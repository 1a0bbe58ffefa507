// The drain rate (issue 17): `messages` queued messages of `sizeBytes` moved
// by the bundled `volley drain` from one MTA to one destination MTA's drain
// endpoint (HTTPS, HMAC-signed batches, group-committed into its spool with
// fsync), both on 127.0.0.1. The rate is the messages over the time from the
// drain's "moving messages" phase to its result (both timestamped in its
// --json lines): the move itself, not the stop of intake and of the MTA
// before it. Run alone: `npx tsx test/bench/drain.ts` (BENCH_MESSAGES to
// change the count; prints one `drain_msgs_per_s` line).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_AUTH, ADMIN_TOKEN, deliveryConfigYaml } from '../helpers/config';
import { startMta, VOLLEY } from '../helpers/mta-process';
import { getFreePort, registerExitCleanup, runSmtpSource } from '../helpers/postfix-tools';
import { ownMta, runDeadlineMs } from './run-guard';
import { VolleyError } from '../../runtime/shared/errors';

export interface DrainBenchResult {
  msgsPerSec: number;
  /** The move: "moving messages" to the result. */
  moveMs: number;
  /** The whole command: stop intake, stop the MTA, move, exit. */
  commandMs: number;
}

export async function measureDrain(opts: { messages: number; sizeBytes: number }): Promise<DrainBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-drain-bench-'));
  const secretFile = join(dir, 'drain.secret');
  writeFileSync(secretFile, randomBytes(32).toString('hex'));
  const drainPort = await getFreePort();
  const node = (name: string, drain: string): string => {
    mkdirSync(join(dir, name));
    const file = join(dir, name, 'volley.yaml');
    // Delivery goes nowhere (port 9) and is paused: the queue stays put until drained.
    writeFileSync(file, deliveryConfigYaml(`routes:\n  - { domain: "*", host: 127.0.0.1, port: 9 }\ndelivery:\n  retry: [1h]\n${drain}`));
    return file;
  };
  const srcConfig = node('src', '');
  const dstConfig = node('dst', `drain:\n  listen: { address: 127.0.0.1, port: ${drainPort} }\n  secret_file: ${secretFile}\n  accept_from: [127.0.0.0/8]\n`);
  const src = await startMta({ configPath: srcConfig, persistentPath: join(dir, 'src', 'pp'), workers: 2 });
  const stopSrc = ownMta(src);
  const dst = await startMta({ configPath: dstConfig, persistentPath: join(dir, 'dst', 'pp'), workers: 2 });
  const stopDst = ownMta(dst);
  try {
    for (const m of [src, dst]) await fetch(`${m.adminUrl}/queue/pause`, { method: 'POST', headers: ADMIN_AUTH });
    const load = await runSmtpSource({ port: src.smtpPort, messages: opts.messages, sessions: 20, sizeBytes: opts.sizeBytes, to: 'rcpt@bench.example', timeoutMs: 300_000 });
    if (load.exitCode !== 0) throw new VolleyError('BENCH_LOAD', `smtp-source failed (${load.exitCode}): ${load.stderr}`);
    const t0 = Date.now();
    const proc = spawn(
      process.execPath,
      [VOLLEY, 'drain', `127.0.0.1:${drainPort}`, '--config', srcConfig, '--persistent-path', src.persistentPath, '--admin', src.adminAddress, '--secret-file', secretFile, '--insecure-tls', '--json', '--no-wait-on-events'],
      { env: { ...process.env, VOLLEY_ADMIN_TOKEN: ADMIN_TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const unregister = registerExitCleanup(() => proc.kill('SIGKILL'));
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadlineMs = runDeadlineMs(opts.messages);
    const timer = setTimeout(() => proc.kill('SIGKILL'), deadlineMs);
    const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
    clearTimeout(timer);
    unregister();
    const commandMs = Date.now() - t0;
    if (code !== 0) throw new VolleyError('BENCH_DRAIN', `volley drain exited ${code} (deadline ${deadlineMs} ms): ${stderr.slice(-2000)}`);
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as { time: string; type: string; phase?: string; moved?: Record<string, number> });
    const moving = lines.find((l) => l.phase === 'moving messages');
    const result = lines.find((l) => l.type === 'result');
    const moved = Object.values(result?.moved ?? {}).reduce((a, b) => a + b, 0);
    if (!moving || !result || moved !== opts.messages) throw new VolleyError('BENCH_DRAIN', `the drain moved ${moved} of ${opts.messages}: ${stdout.slice(-2000)}`);
    const moveMs = Math.max(1, Date.parse(result.time) - Date.parse(moving.time));
    const queued = (await (await fetch(`${dst.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as { queued: number };
    if (queued.queued !== opts.messages) throw new VolleyError('BENCH_DRAIN', `the destination holds ${queued.queued} of ${opts.messages}`);
    return { msgsPerSec: Math.round((opts.messages * 1000) / moveMs), moveMs, commandMs };
  } finally {
    await stopSrc();
    await stopDst();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const messages = Number(process.env.BENCH_MESSAGES ?? 20_000);
  measureDrain({ messages, sizeBytes: 2048 }).then(
    (r) => console.log(`drain of ${messages} 2 KB messages, one MTA to one destination MTA: drain_msgs_per_s ${r.msgsPerSec} (move ${r.moveMs} ms; whole command ${r.commandMs} ms)`),
    (err: Error) => {
      console.error(err.message);
      process.exitCode = 1;
    },
  );
}
