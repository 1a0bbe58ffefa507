// A diagnostic for `mta_cpu_4w_vs_1w`: one run of the workers bench's load
// (PROBE_WORKERS workers, VOLLEY_BIN picks the build) and where its CPU went,
// per process (primary, each worker: user and system time, context switches,
// disk bytes, write calls per message). PROBE_STRACE=<dir> also counts the
// workers' system calls over the timed run (`strace -c -f`, one file a
// worker; strace slows the run, so its CPU figures are not comparable).
// PROBE_SESSIONS (default 20), PROBE_EXTRA_CONFIG (YAML appended to the
// MTA's config), PROBE_PIN_WORKERS / PROBE_MTA_CPUS (taskset for the timed
// run), BENCH_MESSAGES / BENCH_WARMUP_MESSAGES (5,000 each). With
// BENCH_NODE_ARGS="--cpu-prof ..." it prints `WINDOW <start> <end>`, the
// timed run on the profiles' clock (µs). Prints one `PROBE {json}` line.
// Alternate builds and settings from a shell loop (test/bench/README.md,
// session 11, has the runs).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { measureEndToEnd } from './e2e';
import { BENCH_RATE_PER_HOUR } from './workers-cpu';

async function main(): Promise<void> {
  const workers = Number(process.env.PROBE_WORKERS ?? 4);
  const messages = Number(process.env.BENCH_MESSAGES ?? 5000);
  const straceDir = process.env.PROBE_STRACE;
  /** Throttle messages the workers sent their primary, by op (warm-up included). */
  const ipc: Record<string, number> = {};
  const r = await measureEndToEnd({
    workers,
    messages,
    warmupMessages: Number(process.env.BENCH_WARMUP_MESSAGES ?? 5000),
    sessions: Number(process.env.PROBE_SESSIONS ?? 20),
    sizeBytes: 2048,
    messagesPerHour: BENCH_RATE_PER_HOUR,
    label: `probe, ${workers} worker(s)`,
    // PROBE_EXTRA_CONFIG: YAML appended to the MTA's config (e.g. an events section).
    extraConfig: process.env.PROBE_EXTRA_CONFIG ? async () => `${process.env.PROBE_EXTRA_CONFIG}\n` : undefined,
    afterRun: async (mta) => {
      const text = await (await fetch(`${mta.adminUrl}/metrics`)).text();
      for (const m of text.matchAll(/^volley_mta_throttle_ipc_total\{op="([^"]+)"[^}]*\} (\S+)$/gm)) ipc[m[1]] = (ipc[m[1]] ?? 0) + Number(m[2]);
    },
    duringTimedRun: (pids) => {
      // The timed run's window on the monotonic clock that --cpu-prof's timestamps use (µs).
      const t0 = process.hrtime.bigint() / 1000n;
      // PROBE_MTA_CPUS=1: every thread of the MTA's processes on those CPUs for the timed run (taskset -a).
      // PROBE_PIN_WORKERS=1: worker i's threads on CPU i mod cores (each worker a core of its own, as on a large instance).
      if (process.env.PROBE_PIN_WORKERS) pids.slice(1).forEach((pid, i) => spawnSync('taskset', ['-a', '-p', '-c', String(i % availableParallelism()), String(pid)], { stdio: 'ignore' }));
      if (process.env.PROBE_MTA_CPUS) for (const pid of pids) spawnSync('taskset', ['-a', '-p', '-c', process.env.PROBE_MTA_CPUS, String(pid)], { stdio: 'ignore' });
      if (!straceDir) return async () => void process.stdout.write(`WINDOW ${t0} ${process.hrtime.bigint() / 1000n}\n`);
      const tracers: ChildProcess[] = pids.slice(1).map((pid) => spawn('strace', ['-c', '-f', '-o', join(straceDir, `w-${workers}-${pid}.txt`), '-p', String(pid)], { stdio: 'ignore' }));
      return async () => {
        await Promise.all(tracers.map((t) => new Promise<void>((resolve) => {
          t.once('exit', () => resolve());
          t.kill('SIGINT'); // strace writes its summary and detaches
        })));
      };
    },
  });
  const sum = (k: keyof (typeof r.processes)[number]['perMsg'], role?: string): number => r.processes.filter((p) => !role || p.role === role).reduce((n, p) => n + p.perMsg[k], 0);
  const us = (x: number): number => Math.round(x * 1e6);
  process.stdout.write(`PROBE ${JSON.stringify({
    build: process.env.VOLLEY_BIN ?? 'this worktree',
    workers,
    sessions: Number(process.env.PROBE_SESSIONS ?? 20),
    msgsPerSec: r.msgsPerSec,
    cpuUsPerMsg: r.cpuUsPerMsg,
    recordsPerCommit: r.recordsPerCommit,
    txP50Ms: r.txP50Ms,
    primary: { userUs: us(sum('userSeconds', 'primary')), sysUs: us(sum('sysSeconds', 'primary')) },
    workers_: {
      userUs: us(sum('userSeconds', 'worker')),
      sysUs: us(sum('sysSeconds', 'worker')),
      vcsw: +sum('voluntarySwitches', 'worker').toFixed(2),
      ivcsw: +sum('involuntarySwitches', 'worker').toFixed(2),
      diskKB: +(sum('diskWriteBytes', 'worker') / 1024).toFixed(1),
      writes: +sum('writeCalls', 'worker').toFixed(2),
      reads: +sum('readCalls', 'worker').toFixed(2),
    },
    throttleIpc: ipc,
    load: (await import('node:os')).loadavg().map((x) => +x.toFixed(2)),
  })}\n`);
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
