// The workers bench's figures: the ratio at the same load per worker pairs
// each round's runs, and a run's CPU split adds up the primary and workers.
import { countersPer, processCounters, wakeups, type ProcessCounters } from './mta-metrics';
import { cpuSplit, sameLoadPerWorkerFigures, workersCpuFigures, type WorkersRun } from './workers-cpu';

const counters = (cpu: number, wakeups = 0): ProcessCounters => ({ userSeconds: cpu / 2, sysSeconds: cpu / 2, voluntarySwitches: wakeups, involuntarySwitches: 0, diskWriteBytes: 0, writeCalls: 0, readCalls: 0 });

function run(workers: number, sessions: number, cpuUsPerMsg: number, processes: WorkersRun['processes'] = []): WorkersRun {
  return { workers, sessions, cpuUsPerMsg, msgsPerSec: 1000, elapsedMs: 1, intakeMs: 1, txP50Ms: 1, txP99Ms: 1, recordsPerCommit: 4, warmupMsgsPerSec: 1, throttleIpcPerMsg: 0, processes };
}

test('the same-load-per-worker ratio is the median of the rounds, each 4-worker run over its own round\'s single worker', () => {
  const one = [run(1, 20, 400), run(1, 20, 300), run(1, 20, 500)];
  const scaled = [run(4, 80, 480), run(4, 80, 600), run(4, 80, 500)];
  const { figures, lines } = sameLoadPerWorkerFigures(one, scaled);
  // Ratios 1.2, 2.0, 1.0: the median is 1.2 (a ratio of medians would be 500/400 = 1.25).
  expect(figures.mta_cpu_4w_vs_1w_same_load_per_worker).toBe(1.2);
  expect(figures.mta_cpu_us_per_msg_4w_same_load_per_worker).toBe(500);
  expect(lines[0]).toContain('4 workers with 80 sessions against 1 with 20 (the same load per worker): 1.20');
  // The existing figure is untouched by the new one.
  expect(workersCpuFigures(one, [run(4, 20, 800), run(4, 20, 600), run(4, 20, 1000)]).figures.mta_cpu_4w_vs_1w).toBe(2);
});

test("a run's split says the primary's and the workers' CPU and the workers' wakeups per message", () => {
  const r = run(2, 20, 0, [
    { pid: 1, role: 'primary', perMsg: counters(20e-6) },
    { pid: 2, role: 'worker', perMsg: counters(300e-6, 1.5) },
    { pid: 3, role: 'worker', perMsg: counters(250e-6, 1) },
  ]);
  expect(cpuSplit(r)).toBe("primary 20 + workers 550 us/msg, workers' main threads' wakeups 2.5/msg, 4 spool records per durable write");
});

test('counters per message subtract before from after and divide; a process that is gone has none', () => {
  const before = counters(1, 10);
  const after = { ...counters(3, 30), diskWriteBytes: 4096 };
  expect(countersPer(before, after, 2)).toEqual({ userSeconds: 0.5, sysSeconds: 0.5, voluntarySwitches: 10, involuntarySwitches: 0, diskWriteBytes: 2048, writeCalls: 0, readCalls: 0 });
  const own = processCounters(process.pid);
  expect(own && Object.values(own).every(Number.isFinite)).toBe(true);
  expect(processCounters(2 ** 22 + 1)).toBeUndefined(); // above pid_max: never a process
});

test("wake-ups count each time a process's main thread slept and was woken again; a gone process counts none", () => {
  const before = wakeups([process.pid]);
  // Each wait blocks the main thread on a futex until its timeout: it sleeps every time (a timer in the event
  // loop need not: one that is already due when the loop looks runs without a sleep).
  const cell = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 5; i++) Atomics.wait(cell, 0, 0, 2);
  expect(wakeups([process.pid]) - before).toBeGreaterThanOrEqual(5);
  expect(wakeups([2 ** 22 + 1])).toBe(0);
});
