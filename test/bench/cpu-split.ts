// Where the CPU of a bench run went, process by process, and what that says
// on a 2-core machine: the sync-mirror bench runs the MTA, both mirror
// daemons and smtp-source on the same cores, so the secondary's daemon takes
// CPU the MTA would have in a deployment (the secondary on its own machine).
// Each part's CPU comes from /proc/<pid>/stat before and after the timed run;
// smtp-source exits inside it, so its CPU is read from this process's
// children's counters (cutime + cstime of the children it has reaped).
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { processUsage } from './mta-metrics';

/** CPU seconds of the children this process has waited for (smtp-source once it exited). */
export function reapedChildrenCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the command: state is field 0, so utime/stime are 11/12, cutime/cstime 13/14 (clock ticks, 100 a second).
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

/** A snapshot of each named part's CPU seconds; the part `smtp-source` is the reaped children's. */
export function cpuSnapshot(parts: Record<string, number[]>): Record<string, number> {
  const out: Record<string, number> = { 'smtp-source': reapedChildrenCpuSeconds() };
  for (const [name, pids] of Object.entries(parts)) out[name] = processUsage(pids).cpuSeconds;
  return out;
}

/** Microseconds of CPU per message, part by part, between two snapshots. */
export function cpuPerMessage(before: Record<string, number>, after: Record<string, number>, messages: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of Object.keys(after)) out[name] = Math.round(((after[name] - (before[name] ?? 0)) * 1e6) / messages);
  return out;
}

export interface CpuArithmetic {
  /** CPU µs per message of all parts, without and with the mirror. */
  noneUs: number;
  syncUs: number;
  /** The share of the sync run's CPU the two mirror daemons took, and the secondary's alone. */
  mirrorShare: number;
  secondaryShare: number;
  /** How busy the cores were in each run (1 = every core all the time). */
  noneBusy: number;
  syncBusy: number;
  /**
   * The ratio if the secondary's daemon ran on its own machine, as deployed:
   * the sync run's rate scaled by the CPU it would no longer share, when the
   * cores were the bound (syncBusy near 1); an estimate, not a measurement.
   */
  ratioSecondaryElsewhere: number;
  /**
   * The ratio when both runs are bound by the cores (a quiet machine at full
   * load: the rate is cores / CPU per message), whatever this run's load:
   * noneUs / syncUs here, and noneUs / (syncUs - secondary's) with the
   * secondary on its own machine. A ceiling: latency can only lower it.
   */
  cpuBoundRatio: number;
  cpuBoundRatioSecondaryElsewhere: number;
}

/**
 * The 2-core arithmetic from one round's per-part CPU (µs a message) and
 * rates: with the cores saturated, a rate is cores / CPU per message, so
 * taking the secondary's CPU off this machine raises the sync rate by
 * syncUs / (syncUs - secondaryUs); a run that left the cores idle gains nothing.
 */
export function cpuArithmetic(round: { none: { msgsPerSec: number; cpuUs: Record<string, number> }; sync: { msgsPerSec: number; cpuUs: Record<string, number> } }, cores = cpus().length): CpuArithmetic {
  const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
  const noneUs = sum(round.none.cpuUs);
  const syncUs = sum(round.sync.cpuUs);
  const secondaryUs = round.sync.cpuUs['mirror-secondary'] ?? 0;
  const mirrorUs = (round.sync.cpuUs['mirror-primary'] ?? 0) + secondaryUs;
  const busy = (us: number, rate: number): number => (us * rate) / 1e6 / cores;
  const syncBusy = busy(syncUs, round.sync.msgsPerSec);
  // Scaled only when the cores were the bound: a run that left them idle was
  // latency-bound, and fewer processes on the box would not make it faster.
  const scaled = syncBusy >= 0.9 && syncUs > secondaryUs ? (round.sync.msgsPerSec * syncUs) / (syncUs - secondaryUs) : round.sync.msgsPerSec;
  const r2 = (x: number): number => Number(x.toFixed(2));
  return {
    noneUs,
    syncUs,
    mirrorShare: r2(mirrorUs / syncUs),
    secondaryShare: r2(secondaryUs / syncUs),
    noneBusy: r2(busy(noneUs, round.none.msgsPerSec)),
    syncBusy: r2(syncBusy),
    ratioSecondaryElsewhere: r2(scaled / round.none.msgsPerSec),
    cpuBoundRatio: r2(noneUs / syncUs),
    cpuBoundRatioSecondaryElsewhere: r2(noneUs / (syncUs - secondaryUs)),
  };
}
