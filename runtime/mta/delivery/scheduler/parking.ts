// Mail that may not start a delivery because its outcome could not be
// recorded: per partition, the outcomes held in memory and the due messages
// parked behind them. Owns those two counts and the timer that looks again;
// it sends nothing and writes nothing (a message it lets go goes back to the
// retry heap through `requeue`).
import type { Clock, TimerHandle } from '../../../shared/clock';
import type { SpoolPartition } from '../../spool/partition';
import type { SpoolEntry } from '../../spool/types';

/** How often mail parked behind an unrecordable partition looks again. */
const PARK_CHECK_MS = 1000;

export class Parking {
  /** Outcomes held in memory because they could not be recorded, per partition. */
  private readonly unrecorded = new Map<SpoolPartition, number>();
  /** Due mail of partitions that may not start deliveries now (see mayDeliver). */
  private readonly parked = new Map<SpoolPartition, SpoolEntry[]>();
  private timer?: TimerHandle;
  private stopped = false;

  /** `requeue`: a parked message whose partition may deliver again, back to wait for its time. */
  constructor(
    private readonly clock: Clock,
    private readonly requeue: (entries: SpoolEntry[]) => void,
  ) {}

  /**
   * A delivery starts only where its outcome can be recorded: not from a
   * partition that holds an outcome it could not write yet (it would only add
   * to what a crash sends twice), and not while the disk and the spool's
   * reserve are both out of room.
   */
  mayDeliver(partition: SpoolPartition): boolean {
    return (this.unrecorded.get(partition) ?? 0) === 0 && partition.recordable;
  }

  park(entry: SpoolEntry, partition: SpoolPartition): void {
    const list = this.parked.get(partition);
    if (list) list.push(entry);
    else this.parked.set(partition, [entry]);
    this.arm();
  }

  isParked(entry: SpoolEntry, partition: SpoolPartition): boolean {
    return this.parked.get(partition)?.includes(entry) ?? false;
  }

  /** The recorder holds (`held`) or has finally written (not `held`) one outcome of `partition`. */
  onUnrecorded(partition: SpoolPartition, held: boolean): void {
    const n = (this.unrecorded.get(partition) ?? 0) + (held ? 1 : -1);
    if (n > 0) return void this.unrecorded.set(partition, n);
    this.unrecorded.delete(partition);
    this.unpark(partition);
  }

  counts(): { unrecorded: number; parked: number } {
    let unrecorded = 0;
    for (const n of this.unrecorded.values()) unrecorded += n;
    let parked = 0;
    for (const list of this.parked.values()) parked += list.length;
    return { unrecorded, parked };
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Room may come back without an event of ours (a segment deleted, an operator's rm): look now and then. */
  private arm(): void {
    if (this.timer || this.stopped || this.parked.size === 0) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      for (const partition of [...this.parked.keys()]) this.unpark(partition);
      this.arm();
    }, PARK_CHECK_MS);
  }

  private unpark(partition: SpoolPartition): void {
    if (!this.mayDeliver(partition)) return;
    const list = this.parked.get(partition);
    this.parked.delete(partition);
    this.requeue((list ?? []).filter((e) => partition.get(e.id) === e));
  }
}
