// The lb node's open sessions per client address, kept by the primary for
// --max-connections-per-client: workers ask it before they serve a session
// and tell it when one ends, so the limit is exact for the node whichever
// worker the kernel hands a connection to. (Split between the workers, it
// refused a client whose sessions landed mostly on one worker well before
// its limit.) Counted per worker too, so a worker that dies gives back what
// it held.
import { ClientLimits } from '../shared/client-limits';

export class ClientBook {
  private readonly total: ClientLimits;
  private readonly byWorker = new Map<number, Map<string, number>>();

  constructor(limit: number) {
    this.total = new ClientLimits(limit);
  }

  setLimit(limit: number): void {
    this.total.setLimit(limit);
  }

  /** One more session for `address` on `worker`, if the node's count for it is under the limit. */
  tryOpen(worker: number, address: string): boolean {
    if (!this.total.tryOpen(address)) return false;
    const held = this.byWorker.get(worker) ?? new Map<string, number>();
    held.set(address, (held.get(address) ?? 0) + 1);
    this.byWorker.set(worker, held);
    return true;
  }

  /** A session of `address` on `worker` ended; one it never held (a worker restarted since) changes nothing. */
  close(worker: number, address: string): void {
    const held = this.byWorker.get(worker);
    const n = held?.get(address) ?? 0;
    if (n === 0) return;
    if (n === 1) held!.delete(address);
    else held!.set(address, n - 1);
    this.total.close(address);
  }

  /** A worker exited: its sessions are gone with it. */
  forgetWorker(worker: number): void {
    const held = this.byWorker.get(worker);
    this.byWorker.delete(worker);
    for (const [address, n] of held ?? []) for (let i = 0; i < n; i++) this.total.close(address);
  }
}
