// Runs an async job one call at a time, for the primary's config refresh: two
// SIGHUPs (or a SIGHUP and `volley config refresh`) must not run two reads of
// the file at once, where the older one could finish last and win.

/**
 * Wraps `job` so that at most one run is in flight. A call while one runs
 * asks for one more run after it (it must see what changed since the running
 * one started); every call made meanwhile shares that next run and its result.
 */
export function oneAtATime<T>(job: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | undefined;
  let next: Promise<T> | undefined;
  const call = (): Promise<T> => {
    if (!running) {
      running = job().finally(() => (running = undefined));
      return running;
    }
    next ??= running
      .catch(() => undefined) // the next run is asked for whatever became of this one
      .then(() => {
        next = undefined;
        return call();
      });
    return next;
  };
  return call;
}
