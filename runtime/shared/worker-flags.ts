/**
 * V8 flags for the worker processes of the MTA, the proxy and the lb (node:cluster
 * workers; shared here so neither daemon imports the other).
 *
 * Why the MTA's workers take them:
 * A worker allocates ~50 KB per message. The objects of the messages in
 * flight when a scavenge runs are promoted, and die in old space soon after.
 * With V8's defaults the old generation's limit follows its small live size
 * (~10-20 MB), so that garbage set off a full mark-compact every second or
 * so: measured end to end (60,000 messages, 2 cores, Node 24), 66 of them,
 * and GC took 85 us of CPU per message, about a sixth of the worker's.
 *
 * - 64 MB semi-spaces from the start (the maximum too, so the minimum is not
 *   capped by a smaller default): scavenges half as often, so less is
 *   promoted.
 * - A 256 MB initial old generation: the promoted garbage is collected in a
 *   few large mark-compacts, not many small ones.
 *
 * With both the same run had 7 mark-compacts and GC took 31 us per message;
 * the worker's resident memory went from 271 to 315 MB.
 */
export const WORKER_V8_FLAGS = ['--min-semi-space-size=64', '--max-semi-space-size=64', '--initial-old-space-size=256'];

/**
 * The workers' execArgv: these flags, or the operator's own from
 * VOLLEY_WORKER_V8_FLAGS (space-separated; empty for V8's defaults), then the
 * primary's. NODE_OPTIONS cannot carry heap-sizing flags, hence the variable.
 */
export function workerExecArgv(parent: readonly string[], env: NodeJS.ProcessEnv = process.env, defaults: readonly string[] = WORKER_V8_FLAGS): string[] {
  const own = env.VOLLEY_WORKER_V8_FLAGS;
  const flags = own === undefined ? defaults : own.split(/\s+/).filter(Boolean);
  return [...flags, ...parent];
}
