// What a promotion waits for before it files the quarantine and runs
// promote_command: every receive loop of the secondary still running, not
// only the latest (a link replaced while its loop was stuck in a write keeps
// writing into the spool). A wait that lasts (a hung disk) is logged and
// reported, so the journal and status say why promote_command has not run.
import type { Logger } from '../shared/log';

/** After this long a promotion's wait for the receive loops is logged as a warning. */
export const RECEIVE_WAIT_WARN_MS = 5000;

/** Resolves once every loop in `loops` (as it is now) has ended; `onSlow` is called once if that takes longer than `warnMs`. */
export async function receiveLoopsDone(loops: ReadonlySet<Promise<void>>, logger: Logger, onSlow?: (waiting: string) => void, warnMs = RECEIVE_WAIT_WARN_MS): Promise<void> {
  const pending = [...loops];
  if (pending.length === 0) return;
  const timer = setTimeout(() => {
    const waiting = `${pending.length} receive loop(s) of the old link still writing after ${warnMs} ms (a hung disk?): the quarantine filing and promote_command wait for them`;
    logger.warn({ loops: pending.length, waitedMs: warnMs }, `mirror: promoted, but ${waiting}`);
    onSlow?.(waiting);
  }, warnMs);
  try {
    await Promise.all(pending);
  } finally {
    clearTimeout(timer);
  }
}
