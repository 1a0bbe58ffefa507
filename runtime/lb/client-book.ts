// The lb node's open sessions per client address over every worker, kept by
// the primary for --max-connections-per-client. Each worker admits a session
// on its own (its own count never passes the limit) unless the primary has
// said the client is at the limit, and reports its counts a few times a
// second, batched; the primary sums them and tells every worker when a
// client reaches the limit (with the node's count) and when it falls below
// it again. At the limit a worker still admits what it closed since its
// last report: the node's count less its reported share plus its own now.
//
// Why not ask the primary for every session: that exact count cost the lb
// ~100 µs of CPU a session (an IPC round trip each, measured with one
// message per session, smtp-source's default), a third of the lb's whole
// cost a message. Why not split the limit between workers (the earlier
// design): with SCHED_NONE one client's sessions land unevenly, and it was
// refused well before its limit. What this costs: a client may pass the
// limit by what it opens on other workers within one report (100 ms); the
// limit guards slots against one address, it is not a quota.

export interface ClientChange {
  address: string;
  /** True: at the limit over the node (a worker admits only on what it closed since its last report); false: below it again. */
  atLimit: boolean;
  /** The node's open sessions for it, as the workers last reported. */
  open: number;
}

export class ClientBook {
  private readonly byWorker = new Map<number, Map<string, number>>();
  private readonly totals = new Map<string, number>();
  /** The clients at the limit, with the count last told to the workers. */
  private readonly atLimit = new Map<string, number>();

  constructor(private limit: number) {}

  /** A worker's counts now for some addresses (0: none open); what changed for the node. */
  report(worker: number, counts: readonly (readonly [string, number])[]): ClientChange[] {
    const held = this.byWorker.get(worker) ?? new Map<string, number>();
    this.byWorker.set(worker, held);
    for (const [address, n] of counts) {
      const delta = n - (held.get(address) ?? 0);
      if (n > 0) held.set(address, n);
      else held.delete(address);
      this.add(address, delta);
    }
    return this.settle(counts.map(([address]) => address));
  }

  /** A worker exited: its sessions are gone with it. */
  forgetWorker(worker: number): ClientChange[] {
    const held = this.byWorker.get(worker);
    this.byWorker.delete(worker);
    for (const [address, n] of held ?? []) this.add(address, -n);
    return this.settle([...(held?.keys() ?? [])]);
  }

  /** A reload: the new limit for every client. */
  setLimit(limit: number): ClientChange[] {
    this.limit = limit;
    return this.settle([...this.totals.keys(), ...this.atLimit.keys()]);
  }

  /** The clients at the limit now (for a worker that starts). */
  limited(): ClientChange[] {
    return [...this.atLimit].map(([address, open]) => ({ address, atLimit: true, open }));
  }

  /** The node's open sessions for `address`, as last reported. */
  open(address: string): number {
    return this.totals.get(address) ?? 0;
  }

  private add(address: string, delta: number): void {
    const n = (this.totals.get(address) ?? 0) + delta;
    if (n > 0) this.totals.set(address, n);
    else this.totals.delete(address);
  }

  private settle(addresses: Iterable<string>): ClientChange[] {
    const changes: ClientChange[] = [];
    for (const address of new Set(addresses)) {
      const open = this.open(address);
      const now = open >= this.limit;
      // At the limit, a changed count is told too: a worker admits on the count it last reported.
      if (now ? this.atLimit.get(address) === open : !this.atLimit.has(address)) continue;
      if (now) this.atLimit.set(address, open);
      else this.atLimit.delete(address);
      changes.push({ address, atLimit: now, open });
    }
    return changes;
  }
}
