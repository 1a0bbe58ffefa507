/**
 * Open sessions per client address, for the MTA's SMTP intake and the lb's
 * listeners. Counted per worker: with W workers a client gets up to W times
 * the limit at worst, which still stops one client from taking every
 * connection slot.
 */
export class ClientLimits {
  private readonly open = new Map<string, number>();
  constructor(private limit: number) {}

  setLimit(limit: number): void {
    this.limit = limit;
  }

  tryOpen(address: string): boolean {
    const n = this.open.get(address) ?? 0;
    if (n >= this.limit) return false;
    this.open.set(address, n + 1);
    return true;
  }

  /** Sessions open now for `address`. */
  count(address: string): number {
    return this.open.get(address) ?? 0;
  }

  close(address: string): void {
    const n = (this.open.get(address) ?? 1) - 1;
    if (n <= 0) this.open.delete(address);
    else this.open.set(address, n);
  }
}
