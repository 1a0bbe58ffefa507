import { childrenByParent } from '../helpers/procs';

/** Reads a Prometheus histogram from /metrics text and interpolates percentiles from its buckets. */
export function histogramQuantile(metricsText: string, name: string, q: number): number | undefined {
  const buckets: { le: number; count: number }[] = [];
  const re = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+(?:\\.\\d+)?)$`, 'gm');
  for (let m = re.exec(metricsText); m; m = re.exec(metricsText)) buckets.push({ le: m[1] === '+Inf' ? Infinity : Number(m[1]), count: Number(m[2]) });
  if (buckets.length === 0) return undefined;
  buckets.sort((a, b) => a.le - b.le);
  const total = buckets[buckets.length - 1].count;
  if (total === 0) return undefined;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of buckets) {
    if (b.count >= rank) {
      if (b.le === Infinity) return prevLe;
      return prevLe + ((b.le - prevLe) * (rank - prevCount)) / Math.max(1, b.count - prevCount);
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

/** CPU seconds (user+sys) and RSS bytes of a set of processes, from /proc. */
export function processUsage(pids: number[]): { cpuSeconds: number; rssBytes: number } {
  const { readFileSync } = require('node:fs') as typeof import('node:fs');
  let ticks = 0;
  let rss = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
      rss += Number(fields[21]) * 4096;
    } catch {
      // exited
    }
  }
  return { cpuSeconds: ticks / 100, rssBytes: rss };
}

/**
 * Times the main threads of `pids` went to sleep and were woken again
 * (voluntary context switches): a process's wake-ups. A part woken about
 * once a message does its work a message at a time; far fewer means its
 * events come batched (the load queues up for it).
 */
export function wakeups(pids: number[]): number {
  let n = 0;
  for (const pid of pids) n += processCounters(pid)?.voluntarySwitches ?? 0;
  return n;
}

/** The MTA's processes: the primary and its workers. */
export function processTree(rootPid: number): number[] {
  return [rootPid, ...(childrenByParent().get(rootPid) ?? [])];
}

/** One process's counters from /proc: what a per-process breakdown of a run subtracts. */
export interface ProcessCounters {
  userSeconds: number;
  sysSeconds: number;
  voluntarySwitches: number;
  involuntarySwitches: number;
  /** Context switches are the main thread's (/proc/<pid>/status). Bytes this process caused to be sent to the disk (`write_bytes` of /proc/<pid>/io). */
  diskWriteBytes: number;
  writeCalls: number;
  readCalls: number;
}

/** The counters of one process, or undefined once it is gone. */
export function processCounters(pid: number): ProcessCounters | undefined {
  const { readFileSync } = require('node:fs') as typeof import('node:fs');
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const num = (text: string, key: string): number => Number(new RegExp(`^${key}:\\s*(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
    return {
      userSeconds: Number(fields[11]) / 100,
      sysSeconds: Number(fields[12]) / 100,
      voluntarySwitches: num(status, 'voluntary_ctxt_switches'),
      involuntarySwitches: num(status, 'nonvoluntary_ctxt_switches'),
      diskWriteBytes: num(io, 'write_bytes'),
      writeCalls: num(io, 'syscw'),
      readCalls: num(io, 'syscr'),
    };
  } catch {
    return undefined;
  }
}

/** `after - before` per counter, divided by `per` (e.g. the run's messages). */
export function countersPer(before: ProcessCounters, after: ProcessCounters, per: number): ProcessCounters {
  const out = {} as ProcessCounters;
  for (const k of Object.keys(before) as (keyof ProcessCounters)[]) out[k] = (after[k] - before[k]) / per;
  return out;
}
