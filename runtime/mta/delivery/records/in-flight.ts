// The messages in flight: an attempt has begun and its outcome is not yet
// durable. Owns that set and who waits for it to empty (a stop, a drain); a
// message in it is never started again while this process lives.
export class InFlight {
  private readonly ids = new Set<string>();
  private waiters: (() => void)[] = [];

  get size(): number {
    return this.ids.size;
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  add(id: string): void {
    this.ids.add(id);
  }

  /** Out of flight; the last one out wakes whoever waits for none. */
  delete(id: string): void {
    this.ids.delete(id);
    this.notifyIfEmpty();
  }

  /** Several out at once (a purge's released jobs): one wake-up at the end. */
  deleteAll(ids: Iterable<string>): void {
    let any = false;
    for (const id of ids) any = this.ids.delete(id) || any;
    if (any) this.notifyIfEmpty();
  }

  /** Resolves once nothing is in flight (at once when nothing is). */
  empty(): Promise<void> {
    if (this.ids.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private notifyIfEmpty(): void {
    if (this.ids.size === 0) this.waiters.splice(0).forEach((w) => w());
  }
}
