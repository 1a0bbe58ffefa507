// The HA mirror's bench figures (issue 18), both nodes of the pair on this
// machine over loopback: the async lag at intake load
// (mirror_async_lag_p99_ms), a full resync's rate (mirror_resync_mb_per_s)
// and an unplanned promotion with a large queue, from the old primary's
// death to the new primary's MTA answering /readyz (mirror_promote_s).
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, openSync, closeSync, readSync, rmSync, statSync, writeSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultWorkers } from '../../runtime/mta/primary';
import { ADMIN_AUTH, writeTestConfig } from '../helpers/config';
import { sums, untilBoth, writeMirrorYaml } from '../helpers/mirror-pair';
import { startMirror, type MirrorProcess } from '../helpers/mirror-process';
import { startMta } from '../helpers/mta-process';
import { getFreePort, runSmtpSource } from '../helpers/postfix-tools';
import { newSecret, proxyTls } from '../helpers/proxy-fixtures';
import { processTree, processUsage } from './mta-metrics';
import { ownMta, runDeadlineMs } from './run-guard';
import { fillSpool } from './spool-fill';

type Status = Record<string, unknown>;

interface BenchPair {
  a: string;
  b: string;
  adminA: string;
  adminB: string;
  cfgB: string;
  mirrors: MirrorProcess[];
  startB(): Promise<void>;
  close(): Promise<void>;
}

/** Two persistent paths under `dir` and node A's mirror, made primary (a forced promotion of a lone node); B's mirror starts when asked. */
async function startPair(dir: string, extra = ''): Promise<BenchPair> {
  const tls = await proxyTls(join(dir, 'tls'));
  writeFileSync(join(dir, 'mirror.secret'), newSecret());
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  mkdirSync(a, { recursive: true });
  mkdirSync(b, { recursive: true });
  const port = { a: await getFreePort(), b: await getFreePort(), adminA: await getFreePort(), adminB: await getFreePort() };
  const adminA = `127.0.0.1:${port.adminA}`;
  const adminB = `127.0.0.1:${port.adminB}`;
  const cfgA = writeMirrorYaml(dir, 'a', { pp: a, self: port.a, peer: port.b, admin: adminA, tls, extra });
  const cfgB = writeMirrorYaml(dir, 'b', { pp: b, self: port.b, peer: port.a, admin: adminB, tls, extra });
  const mirrors: MirrorProcess[] = [await startMirror(cfgA, adminA)];
  const promoted = await fetch(`http://${adminA}/promote?force=1`, { method: 'POST' });
  if (!promoted.ok) throw new Error(`cannot make node A the primary: ${await promoted.text()}`);
  return {
    a,
    b,
    adminA,
    adminB,
    cfgB,
    mirrors,
    startB: async () => {
      mirrors.push(await startMirror(cfgB, adminB));
    },
    close: async () => {
      for (const m of mirrors) await m.crash();
    },
  };
}

async function status(admin: string): Promise<Status> {
  return (await (await fetch(`http://${admin}/status`)).json()) as Status;
}

/** Polls both nodes until the primary says the secondary holds everything (caught up, no lag) and the secondary agrees; the primary's status then. */
async function untilCaughtUp(pair: BenchPair, timeoutMs: number, what: string): Promise<Status> {
  const [primary] = await untilBoth(pair.mirrors, (p, s) => p.caught_up === true && p.lag_bytes === 0 && p.peer_connected === true && s.caught_up === true, pair.adminA, pair.adminB, what, timeoutMs);
  return primary;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export interface AsyncLagResult {
  samples: number;
  lagP50Ms: number;
  lagP99Ms: number;
  lagMaxMs: number;
  lagBytesP99: number;
  intakeMsgsPerSec: number;
}

/**
 * smtp-source into the primary's MTA (delivery paused: the intake load of
 * `measureIntake`) with an async mirror to a secondary on the same machine;
 * the primary's mirror status is sampled every 10 ms during the load and the
 * figure is the p99 of its lag_seconds (age of the oldest change the
 * secondary does not hold durably yet), in milliseconds.
 */
export async function measureMirrorAsyncLag(opts: { messages: number; sessions: number; sizeBytes: number }): Promise<AsyncLagResult> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-bench-mirror-lag-'));
  const pair = await startPair(dir);
  try {
    const mta = await startMta({ configPath: writeTestConfig(dir, { relayFrom: ['127.0.0.0/8'] }), persistentPath: pair.a, workers: defaultWorkers() });
    const stopMta = ownMta(mta);
    try {
      await fetch(`${mta.adminUrl}/queue/pause`, { method: 'POST', headers: ADMIN_AUTH });
      await pair.startB();
      await untilCaughtUp(pair, 60_000, 'the secondary catching up before the load');
      // The same short warm-up as the intake run (JIT, page cache), not sampled.
      await runSmtpSource({ port: mta.smtpPort, messages: 500, sessions: opts.sessions, sizeBytes: opts.sizeBytes });
      const lagMs: number[] = [];
      const lagBytes: number[] = [];
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const s = await status(pair.adminA).catch(() => undefined);
          if (s && sampling) {
            lagMs.push(Number(s.lag_seconds) * 1000);
            lagBytes.push(Number(s.lag_bytes));
          }
          await new Promise((r) => setTimeout(r, 10));
        }
      })();
      const r = await runSmtpSource({ port: mta.smtpPort, messages: opts.messages, sessions: opts.sessions, sizeBytes: opts.sizeBytes, timeoutMs: runDeadlineMs(opts.messages) });
      sampling = false;
      await sampler;
      if (r.exitCode !== 0) throw new Error(`smtp-source failed (${r.exitCode}): ${r.stderr}`);
      lagMs.sort((x, y) => x - y);
      lagBytes.sort((x, y) => x - y);
      return {
        samples: lagMs.length,
        lagP50Ms: Math.round(quantile(lagMs, 0.5)),
        lagP99Ms: Math.round(quantile(lagMs, 0.99)),
        lagMaxMs: Math.round(lagMs[lagMs.length - 1] ?? NaN),
        lagBytesP99: quantile(lagBytes, 0.99),
        intakeMsgsPerSec: Math.round((opts.messages * 1000) / r.elapsedMs),
      };
    } finally {
      await stopMta();
    }
  } finally {
    await pair.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface ResyncResult {
  mb: number;
  seconds: number;
  mbPerSec: number;
  files: number;
}

/**
 * A full resync: the primary holds `mb` MB of spool segments (2 KB
 * messages written with the spool's own writer); the secondary holds the
 * same files with the last byte of each changed, so every segment's history
 * diverged and is copied whole (truncate, then batches with their sha256,
 * fsynced), with resync_rate set far above what the machine can do. Timed
 * from the secondary's mirror answering /healthz to the primary reporting
 * it caught up. MB are 2^20 bytes.
 */
export async function measureMirrorResync(opts: { mb: number }): Promise<ResyncResult> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-bench-mirror-resync-'));
  const pair = await startPair(dir, 'resync_rate: 100GB\n');
  try {
    const workers = defaultWorkers();
    await fillSpool(pair.a, Math.ceil((opts.mb * 1024 * 1024) / 2150), workers);
    cpSync(join(pair.a, 'spool'), join(pair.b, 'spool'), { recursive: true });
    const segments = Object.keys(sums(pair.b)).filter((f) => f.endsWith('.seg'));
    for (const f of segments) flipLastByte(join(pair.b, f));
    const bytes = segments.reduce((n, f) => n + statSync(join(pair.a, f)).size, 0);
    // The set-up left a GB of dirty pages (the spool written without fsync, then copied): flushed first, or the run times their writeback.
    execFileSync('sync');
    await pair.startB();
    const t0 = Date.now();
    const s = await untilCaughtUp(pair, runDeadlineMs(0) + (bytes / 1e6) * 1000, 'the full resync');
    const seconds = (Date.now() - t0) / 1000;
    if (Number(s.full_resyncs) < segments.length) throw new Error(`expected ${segments.length} files copied whole, the primary says ${String(s.full_resyncs)}`);
    const mb = Number(s.bytes_sent) / 1024 / 1024;
    return { mb: Math.round(mb), seconds: Math.round(seconds * 100) / 100, mbPerSec: Math.round(mb / seconds), files: segments.length };
  } finally {
    await pair.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function flipLastByte(file: string): void {
  const fd = openSync(file, 'r+');
  try {
    const at = statSync(file).size - 1;
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
  }
}

export interface PromoteResult {
  queued: number;
  /** Old primary's death to the new primary's MTA answering /readyz. */
  promoteS: number;
  /** Of which: `promote` on the secondary's mirror (epoch + 1, durable). */
  promoteCallMs: number;
  /** Of which: the MTA's start on the promoted path to /readyz (its spool recovery). */
  mtaStartS: number;
  /** How long the secondary took to catch up with the queue first (set-up, not timed in the figure). */
  initialCopyS: number;
  rssMb: number;
}

/**
 * An unplanned failover with a large queue: `messages` 2 KB messages queued
 * on the primary (spool writer, deferred a day), mirrored to the secondary;
 * the primary's mirror is killed (SIGKILL), the secondary promoted and an MTA
 * started on its persistent path. Timed from the kill to that MTA's /readyz.
 */
export async function measureMirrorPromote(opts: { messages: number }): Promise<PromoteResult> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-bench-mirror-promote-'));
  const pair = await startPair(dir);
  try {
    const workers = defaultWorkers();
    await fillSpool(pair.a, opts.messages, workers);
    execFileSync('sync');
    const c0 = Date.now();
    await pair.startB();
    await untilCaughtUp(pair, runDeadlineMs(opts.messages, 2_000), 'the secondary copying the queue');
    const initialCopyS = (Date.now() - c0) / 1000;
    execFileSync('sync'); // the primary's queue was written without fsync: its writeback is set-up, not the failover

    const t0 = Date.now();
    await pair.mirrors[0].crash();
    const promoted = await fetch(`http://${pair.adminB}/promote`, { method: 'POST' });
    if (!promoted.ok) throw new Error(`promotion refused: ${await promoted.text()}`);
    const t1 = Date.now();
    const mta = await startMta({ configPath: writeTestConfig(dir, { relayFrom: ['127.0.0.0/8'] }), persistentPath: pair.b, workers });
    const t2 = Date.now();
    const stopMta = ownMta(mta);
    try {
      const q = (await (await fetch(`${mta.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as { queued: number };
      const rss = processUsage(processTree(mta.proc.pid!)).rssBytes;
      return {
        queued: q.queued,
        promoteS: Math.round((t2 - t0) / 10) / 100,
        promoteCallMs: t1 - t0,
        mtaStartS: Math.round((t2 - t1) / 10) / 100,
        initialCopyS: Math.round(initialCopyS * 10) / 10,
        rssMb: Math.round(rss / 1024 / 1024),
      };
    } finally {
      await stopMta();
    }
  } finally {
    await pair.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
