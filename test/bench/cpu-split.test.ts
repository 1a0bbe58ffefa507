// The sync-mirror bench's CPU arithmetic: the mirrors' share of the run's
// CPU, how busy the cores were, and the ratio with the secondary elsewhere,
// claimed only for a run the cores bounded.
import { cpuArithmetic, cpuPerMessage, reapedChildrenCpuSeconds } from './cpu-split';

test('CPU per message between two snapshots, part by part', () => {
  expect(cpuPerMessage({ mta: 1, 'smtp-source': 0.5 }, { mta: 1.3, 'smtp-source': 0.6 }, 1000)).toEqual({ mta: 300, 'smtp-source': 100 });
});

test('a CPU-bound sync run: the secondary moved off the box gives back its share of the cores', () => {
  const a = cpuArithmetic(
    {
      none: { msgsPerSec: 4000, cpuUs: { mta: 400, 'smtp-source': 100 } },
      // 1,000 µs a message at 2,000 msg/s: both cores full.
      sync: { msgsPerSec: 2000, cpuUs: { mta: 500, 'smtp-source': 100, 'mirror-primary': 200, 'mirror-secondary': 200 } },
    },
    2,
  );
  expect(a).toEqual({ noneUs: 500, syncUs: 1000, mirrorShare: 0.4, secondaryShare: 0.2, noneBusy: 1, syncBusy: 1, ratioSecondaryElsewhere: 0.63, cpuBoundRatio: 0.5, cpuBoundRatioSecondaryElsewhere: 0.63 });
});

test('a run that left the cores idle was latency-bound: no gain is claimed', () => {
  const a = cpuArithmetic(
    {
      none: { msgsPerSec: 1000, cpuUs: { mta: 400, 'smtp-source': 100 } },
      sync: { msgsPerSec: 500, cpuUs: { mta: 500, 'smtp-source': 100, 'mirror-primary': 200, 'mirror-secondary': 200 } },
    },
    2,
  );
  expect(a.syncBusy).toBe(0.25);
  expect(a.ratioSecondaryElsewhere).toBe(0.5);
  // The ceiling on a quiet machine does not depend on this run's rates.
  expect([a.cpuBoundRatio, a.cpuBoundRatioSecondaryElsewhere]).toEqual([0.5, 0.63]);
});

test('the reaped children\'s CPU is a number of seconds that never goes down', () => {
  const first = reapedChildrenCpuSeconds();
  expect(first).toBeGreaterThanOrEqual(0);
  expect(reapedChildrenCpuSeconds()).toBeGreaterThanOrEqual(first);
});
