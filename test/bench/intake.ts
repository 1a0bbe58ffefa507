import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_AUTH, writeTestConfig } from '../helpers/config';
import { defaultWorkers } from '../../runtime/mta/primary';
import { startMta } from '../helpers/mta-process';
import { runSmtpSource } from '../helpers/postfix-tools';
import { histogramQuantile, processTree, processUsage } from './mta-metrics';
import { ownMta, runDeadlineMs } from './run-guard';
import { fillSpool } from './spool-fill';

export interface IntakeResult {
  workers: number;
  messages: number;
  msgsPerSec: number;
  p50Ms?: number;
  p99Ms?: number;
  cpuUsPerMsg: number;
  rssMb: number;
}

/**
 * smtp-source → MTA with fsync on and delivery paused, so the figure is the
 * intake path alone (delivery is measured end to end elsewhere).
 */
export async function measureIntake(opts: { workers?: number; messages: number; sessions: number; sizeBytes: number }): Promise<IntakeResult> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-bench-'));
  const config = writeTestConfig(dir, { relayFrom: ['127.0.0.0/8'] });
  const workers = opts.workers ?? defaultWorkers();
  const mta = await startMta({ configPath: config, persistentPath: join(dir, 'pp'), workers });
  const stopMta = ownMta(mta);
  try {
    await fetch(`${mta.adminUrl}/queue/pause`, { method: 'POST', headers: ADMIN_AUTH });
    // A short warm-up (JIT, page cache) that is not timed.
    await runSmtpSource({ port: mta.smtpPort, messages: 500, sessions: opts.sessions, sizeBytes: opts.sizeBytes });
    const before = await (await fetch(`${mta.adminUrl}/metrics`)).text();
    const pids = processTree(mta.proc.pid!);
    const u0 = processUsage(pids);
    const r = await runSmtpSource({ port: mta.smtpPort, messages: opts.messages, sessions: opts.sessions, sizeBytes: opts.sizeBytes, timeoutMs: runDeadlineMs(opts.messages) });
    if (r.exitCode !== 0) throw new Error(`smtp-source failed (${r.exitCode}): ${r.stderr}`);
    const u1 = processUsage(pids);
    const after = await (await fetch(`${mta.adminUrl}/metrics`)).text();
    const name = 'volley_intake_commit_seconds';
    const delta = subtractHistogram(after, before, name);
    return {
      workers,
      messages: opts.messages,
      msgsPerSec: Math.round((opts.messages * 1000) / r.elapsedMs),
      p50Ms: round2((histogramQuantile(delta, name, 0.5) ?? NaN) * 1000),
      p99Ms: round2((histogramQuantile(delta, name, 0.99) ?? NaN) * 1000),
      cpuUsPerMsg: Math.round(((u1.cpuSeconds - u0.cpuSeconds) * 1e6) / opts.messages),
      rssMb: Math.round(u1.rssBytes / 1024 / 1024),
    };
  } finally {
    await stopMta();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bucket counts of `after` minus `before`, as metrics text again: the warm-up is left out. */
function subtractHistogram(after: string, before: string, name: string): string {
  const read = (text: string): Map<string, number> => {
    const m = new Map<string, number>();
    const re = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`, 'gm');
    for (let x = re.exec(text); x; x = re.exec(text)) m.set(x[1], Number(x[2]));
    return m;
  };
  const a = read(after);
  const b = read(before);
  return [...a].map(([le, n]) => `${name}_bucket{le="${le}"} ${n - (b.get(le) ?? 0)}`).join('\n');
}

/**
 * Fills a persistent path with `count` queued 2 KB messages (written straight
 * through the spool API, fsync off: this is set-up, not the measurement), then
 * times `volley mta` from start to /readyz and reads its RSS.
 */
export async function measureStartup(count: number, workers = defaultWorkers()): Promise<{ startupS: number; rssMb: number; queued: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-bench-1m-'));
  try {
    await fillSpool(join(dir, 'pp'), count, workers);
    const config = writeTestConfig(dir, { relayFrom: ['127.0.0.0/8'] });
    const t0 = Date.now();
    const mta = await startMta({ configPath: config, persistentPath: join(dir, 'pp'), workers });
    const stopMta = ownMta(mta);
    const startupS = (Date.now() - t0) / 1000;
    let q: { workers: { queued: number }[] };
    let rss: number;
    try {
      q = (await (await fetch(`${mta.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as { workers: { queued: number }[] };
      rss = processUsage(processTree(mta.proc.pid!)).rssBytes;
    } finally {
      await stopMta();
    }
    return { startupS: round2(startupS), rssMb: Math.round(rss / 1024 / 1024), queued: q.workers.reduce((n, w) => n + w.queued, 0) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
