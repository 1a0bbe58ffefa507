// A worker's view of --max-connections-per-client over the lb node: which
// clients the primary said are at the limit (with the node's count), and
// this worker's counts as it last reported them (client-book.ts). At the
// limit a worker still admits what it closed since its last report: the
// node's count less its reported share plus its own count now. Without that,
// a client that closed a session and opened another at once was refused on
// the very worker that held its count, until the next report.

export class ClientGate {
  /** Clients at the limit: the node's count, as the primary last said. */
  private readonly atLimit = new Map<string, number>();
  /** This worker's counts as last reported: its share of that count. */
  private readonly reported = new Map<string, number>();

  /** Whether a session more from `address` would pass `limit` over the node, this worker holding `mine` now. */
  full(address: string, mine: number, limit: number): boolean {
    const node = this.atLimit.get(address);
    return node !== undefined && node - (this.reported.get(address) ?? 0) + mine >= limit;
  }

  /** Whether the primary said `address` is at the limit. */
  limited(address: string): boolean {
    return this.atLimit.has(address);
  }

  /** This worker's counts just sent to the primary. */
  sent(counts: readonly (readonly [string, number])[]): void {
    for (const [address, n] of counts) {
      if (n > 0) this.reported.set(address, n);
      else this.reported.delete(address);
    }
  }

  /** The primary's word: clients that reached the limit (with the node's count) or left it. */
  told(changes: readonly { address: string; atLimit: boolean; open: number }[]): void {
    for (const c of changes) {
      if (c.atLimit) this.atLimit.set(c.address, c.open);
      else this.atLimit.delete(c.address);
    }
  }
}
