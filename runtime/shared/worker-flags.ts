// The execArgv of a daemon's cluster workers (the MTA's, the lb's): the
// daemon's own V8 flags, or the operator's from VOLLEY_WORKER_V8_FLAGS, then
// the primary's. Shared so every daemon reads the variable the same way.

/**
 * `defaults`, or the operator's own flags from VOLLEY_WORKER_V8_FLAGS
 * (space-separated; empty for V8's defaults), then the primary's.
 * NODE_OPTIONS cannot carry heap-sizing flags, hence the variable.
 */
export function workerExecArgv(defaults: readonly string[], parent: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const own = env.VOLLEY_WORKER_V8_FLAGS;
  const flags = own === undefined ? defaults : own.split(/\s+/).filter(Boolean);
  return [...flags, ...parent];
}
