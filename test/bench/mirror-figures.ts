// The mirror's three runs in order, with the lines the report prints and the
// figures for the BENCH json; shared by `npm run bench` and `npm run bench:mirror`.
import { measureMirrorAsyncLag, measureMirrorPromote, measureMirrorResync } from './mirror-pair';

export interface MirrorBenchOptions {
  load: { messages: number; sessions: number; sizeBytes: number };
  resyncMb: number;
  promoteMessages: number;
}

/** Runs the three measurements; every figure lands in `partial` as soon as it is measured (`partial.stage` names the run under way). */
export async function mirrorFigures(o: MirrorBenchOptions, partial: Record<string, unknown>, line: (s: string) => void): Promise<Record<string, number>> {
  partial.stage = 'mirror: async lag at intake load';
  const lag = await measureMirrorAsyncLag(o.load);
  partial.mirror_async_lag_p99_ms = lag.lagP99Ms;
  line(`mirror, async, at intake load (${o.load.messages} messages, ${lag.intakeMsgsPerSec} msg/s with the mirror): lag p50 ${lag.lagP50Ms} ms, p99 ${lag.lagP99Ms} ms, max ${lag.lagMaxMs} ms (${lag.samples} samples of the primary's lag_seconds every 10 ms; lag bytes p99 ${lag.lagBytesP99})`);

  partial.stage = 'mirror: full resync';
  const resync = await measureMirrorResync({ mb: o.resyncMb });
  partial.mirror_resync_mb_per_s = resync.mbPerSec;
  line(`mirror, full resync of ${resync.mb} MB in ${resync.files} diverged segments, resync_rate far above it: ${resync.mbPerSec} MB/s (${resync.seconds} s)`);

  partial.stage = 'mirror: promotion with a full queue';
  const promote = await measureMirrorPromote({ messages: o.promoteMessages });
  partial.mirror_promote_s = promote.promoteS;
  line(`mirror, unplanned promotion with ${promote.queued} queued messages: ${promote.promoteS} s from the primary's death to the new primary's /readyz (promote ${promote.promoteCallMs} ms, the MTA's start with its spool recovery ${promote.mtaStartS} s; RSS ${promote.rssMb} MB; the secondary's initial copy of that queue took ${promote.initialCopyS} s)`);
  delete partial.stage;
  return {
    mirror_async_lag_p99_ms: lag.lagP99Ms,
    mirror_async_lag_intake_msgs_per_s: lag.intakeMsgsPerSec,
    mirror_resync_mb_per_s: resync.mbPerSec,
    mirror_promote_s: promote.promoteS,
    mirror_promote_queued: promote.queued,
    mirror_promote_mta_start_s: promote.mtaStartS,
  };
}
