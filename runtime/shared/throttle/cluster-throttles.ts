import { HourWindow } from './hour-window';
/**
 * Cluster-wide throttle decisions, as a Volley proxy takes them for every MTA
 * connected to its control channel. Pure: no I/O, the clock is injected.
 *
 * Per throttle key (`<vmta or sending ip>|<destination>`) it keeps the limits
 * each MTA registered (every acquire carries them) and merges them:
 *   average  the MTAs are configured with the cluster-wide limit (the usual
 *            case: identical configs everywhere); the cluster gets their mean.
 *   sum      each MTA is configured with its share; the cluster gets the total.
 * Connection permits are granted up to the merged maximum to whichever MTA asks,
 * so the whole limit is available to one MTA when only it has mail. Messages
 * are counted per key over a sliding hour (60 one-minute buckets). When an
 * MTA's control connection goes away, `forget` drops its limits and the
 * connection permits it held.
 */

export type MergeMode = 'average' | 'sum';

/** Limits as an MTA registers them; null: no hourly cap. */
export interface ClusterLimits {
  maxConnections: number;
  maxMessagesPerHour: number | null;
}

export type MessagePermit = { ok: true } | { ok: false; waitMs: number };


interface KeyState {
  limits: Map<string, ClusterLimits>;
  /** Connection permits held, per MTA. */
  held: Map<string, number>;
  connections: number;
  sent: HourWindow;
}

/**
 * The MTA node a control connection belongs to. The proxy names each
 * connection `<name the MTA sent>#<n>`, and an MTA worker sends
 * `<node id>/w<worker>` (runtime/mta/worker.ts): the workers of one node are
 * one MTA to the merge. A worker of a proxy run with --workers adds its own
 * scope after that (workerScoped), which changes nothing here: the MTA
 * node's control links may land on any of the proxy's workers. Any other
 * name is its own MTA.
 */
export function nodeOf(mta: string): string {
  return /^(.+)\/w\d+#\d+(?:@[^@/]+)?$/.exec(mta)?.[1] ?? mta;
}

/**
 * A control connection's id as one worker of a proxy node gives it to the
 * node's one ClusterThrottles: unique to that worker (`scope`: its index and
 * pid), with the MTA's own name first, so nodeOf still reads the MTA node.
 */
export function workerScoped(mta: string, scope: string): string {
  return `${mta}@${scope}`;
}

export class ClusterThrottles {
  private readonly keys = new Map<string, KeyState>();
  /** The keys each MTA touched, so forgetting it is cheap. */
  private readonly byMta = new Map<string, Set<string>>();
  /** Keys a forget left with no MTA, kept while their hour still counts messages: what prune looks at (not every key). */
  private readonly orphans = new Set<string>();

  constructor(
    readonly merge: MergeMode = 'average',
    private readonly now: () => number = Date.now,
  ) {}

  /** Records (or updates) an MTA's limits for a key. */
  register(mta: string, key: string, limits: ClusterLimits): void {
    const s = this.state(key);
    s.limits.set(mta, { maxConnections: Math.max(0, Math.floor(limits.maxConnections)), maxMessagesPerHour: limits.maxMessagesPerHour === null ? null : Math.max(0, limits.maxMessagesPerHour) });
    let touched = this.byMta.get(mta);
    if (!touched) this.byMta.set(mta, (touched = new Set()));
    touched.add(key);
  }

  /** The cluster-wide limits for a key: the registered limits merged (undefined when nobody registered). */
  limitsFor(key: string): ClusterLimits | undefined {
    const s = this.keys.get(key);
    if (!s || s.limits.size === 0) return undefined;
    // One value per MTA node: its workers each keep a control connection and
    // register the same limits, and under `sum` each would add the node's share again.
    const byNode = new Map<string, ClusterLimits>();
    for (const [mta, l] of s.limits) byNode.set(nodeOf(mta), l);
    const all = [...byNode.values()];
    const conns = all.map((l) => l.maxConnections);
    const hourly = all.map((l) => l.maxMessagesPerHour);
    return { maxConnections: this.combine(conns), maxMessagesPerHour: hourly.some((h) => h === null) ? null : this.combine(hourly as number[]) };
  }

  /**
   * Takes a connection permit for `mta` if the key has one free. `reclaim`
   * grants it regardless: an MTA re-registering permits it already held when
   * its control connection came back (the count may then exceed the limit
   * until they are released).
   */
  tryConnection(mta: string, key: string, limits: ClusterLimits, reclaim = false): boolean {
    this.register(mta, key, limits);
    const s = this.state(key);
    if (!reclaim && s.connections >= this.limitsFor(key)!.maxConnections) return false;
    s.connections++;
    s.held.set(mta, (s.held.get(mta) ?? 0) + 1);
    return true;
  }

  /** Gives back one of `mta`'s permits for the key; a release for a permit it does not hold is ignored. */
  releaseConnection(mta: string, key: string): void {
    const s = this.keys.get(key);
    const n = s?.held.get(mta) ?? 0;
    if (!s || n === 0) return;
    if (n === 1) s.held.delete(mta);
    else s.held.set(mta, n - 1);
    s.connections--;
  }

  /** Counts one message if the key's hourly limit allows; otherwise how long until the window frees one. */
  tryMessage(mta: string, key: string, limits: ClusterLimits): MessagePermit {
    this.register(mta, key, limits);
    const max = this.limitsFor(key)!.maxMessagesPerHour;
    if (max === null) return { ok: true };
    return this.state(key).sent.take(max);
  }

  /** The MTA is gone (its control connection closed): its limits and held permits go with it. */
  forget(mta: string): void {
    const touched = this.byMta.get(mta) ?? new Set<string>();
    this.byMta.delete(mta);
    for (const key of touched) {
      const s = this.keys.get(key);
      if (!s) continue;
      s.connections -= s.held.get(mta) ?? 0;
      s.held.delete(mta);
      s.limits.delete(mta);
      if (s.limits.size === 0) this.orphans.add(key);
    }
    this.prune();
  }

  /**
   * Drops the keys no MTA uses any more whose hour has nothing counted. A key
   * whose last MTA left keeps its hourly count until the window empties:
   * messages sent are sent, and a control link that breaks and comes back
   * (a missed beacon, an MTA restart) is a new MTA here, which must not get
   * a fresh hour. Run on forget (a control connection closing), over the
   * orphaned keys only: a node restart forgets one link per MTA worker, and a
   * pass over every key each time held the proxy primary's event loop, which
   * answers every throttle ask, ~100x longer (1,000 forgets over 50,000 keys:
   * 1.4 s against 13 ms, measured in review).
   */
  private prune(): void {
    for (const key of this.orphans) {
      const s = this.keys.get(key);
      // Registered again meanwhile: no longer an orphan.
      if (!s || s.limits.size > 0) this.orphans.delete(key);
      else if (s.sent.used === 0) {
        this.keys.delete(key);
        this.orphans.delete(key);
      }
    }
  }

  /** Keys with state: limits registered, or messages still counted in the hour. */
  get tracked(): number {
    return this.keys.size;
  }

  /** Connection permits held on a key (all MTAs, or one). */
  connections(key: string, mta?: string): number {
    const s = this.keys.get(key);
    if (!s) return 0;
    return mta === undefined ? s.connections : (s.held.get(mta) ?? 0);
  }

  /** Messages counted on a key in the last hour. */
  messages(key: string): number {
    return this.keys.get(key)?.sent.used ?? 0;
  }

  /** MTAs with registered limits (any key). */
  get mtas(): number {
    return this.byMta.size;
  }

  private combine(values: number[]): number {
    const total = values.reduce((a, b) => a + b, 0);
    if (this.merge === 'sum') return total;
    const mean = total / values.length;
    // Rounded down (1 and 2 average to 1), but never 0 while some MTA allows any.
    return mean > 0 ? Math.max(1, Math.floor(mean)) : 0;
  }

  private state(key: string): KeyState {
    let s = this.keys.get(key);
    if (!s) {
      s = { limits: new Map(), held: new Map(), connections: 0, sent: new HourWindow(this.now) };
      this.keys.set(key, s);
    }
    return s;
  }

}
