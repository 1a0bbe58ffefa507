// Moves the local queue to the destinations, the seed's way: batches go
// round-robin; a destination that fails has its batch sent to the next one
// and gets its own next turn as usual; it keeps trying until everything has
// moved or it is stopped. Two rules keep every message in one place:
// - a batch is journaled to a destination before it is sent, and is removed
//   locally only for the ids that destination acknowledged (queued/duplicate);
// - a batch whose fate is unknown (the request went out, no answer came) is
//   "held" for that destination: it is sent there again on its next turn (the
//   destination deduplicates) and never to another. Only a batch that
//   certainly was not taken (never reached, a 503, a whole-request refusal)
//   fails over to the next destination.
// A destination that keeps failing held batches (a wedged store answering 500
// `unknown`, or no answer at all) is given up after a bound (GiveUpOptions):
// its batches stay queued here and journaled to it (it may have stored them:
// sending them elsewhere could deliver twice), it gets nothing new, and the
// drain ends naming it and those ids; a rerun, or an MTA started instead,
// settles them with that destination once it answers again.
import type { DrainRecord } from '../protocol';
import { encodeBatch } from '../protocol';
import type { DestinationClient, SendOutcome } from './destination-client';
import type { Journal } from './journal';

export interface Batch {
  ids: string[];
  records: DrainRecord[];
  /** Sends of this batch to the destination it is held for that did not say (counted toward GiveUpOptions.maxAttempts). */
  tries?: number;
}

/** When a destination that cannot say whether it stored a batch is given up. */
export interface GiveUpOptions {
  /**
   * Sends of one held batch to it that did not settle that batch; per batch:
   * what it answers for its other batches does not reset it (one wedged
   * batch, say its worker's store hangs, is given up all the same).
   */
  maxAttempts: number;
  /**
   * Time since its first such failure with no answer from it since: any batch
   * it answers (taken, or 413) shows it alive and starts this time again.
   */
  afterMs: number;
}

/** Whichever comes first: with the default 1 s retry delay, 10 sends take about two minutes. */
export const DEFAULT_GIVE_UP: GiveUpOptions = { maxAttempts: 10, afterMs: 10 * 60_000 };

export interface DistributorOptions {
  clients: DestinationClient[];
  /** Labels of clients that only get back what the journal holds for them (a rerun's destination no longer listed). */
  heldOnly?: ReadonlySet<string>;
  /** Batches the journal holds for a destination (a rerun after a SIGKILL). */
  held?: Map<string, Batch[]>;
  /** The next batch of messages not yet sent anywhere; undefined when the queue is read out. */
  nextBatch: () => Promise<Batch | undefined>;
  journal: Journal;
  /** Removes acknowledged ids from the local spool (done records, reason `drained`). */
  remove: (ids: string[]) => Promise<void>;
  concurrency: number;
  /** Wait after every destination failed a batch in a row (doubles up to 16 times this). */
  retryDelayMs: number;
  onProgress?: (p: { dest: string; moved: number; duplicates: number }) => void;
  onProblem?: (p: { dest: string; reason: string; kind: 'retry' | 'never' | 'held' | 'gave-up' }) => void;
  /** Defaults: DEFAULT_GIVE_UP. */
  giveUp?: Partial<GiveUpOptions>;
  now?: () => number;
}

export interface DistributionResult {
  moved: Record<string, number>;
  /** Messages a destination refused individually (malformed: never accepted anywhere): they stay queued. */
  refused: { id: string; dest: string; reason: string }[];
  /** Destinations that will never accept (401/403/409/400), with why. */
  never: Record<string, string>;
  /** Destinations given up (GiveUpOptions): why, and the ids that may be there, still queued here and journaled to it. */
  gaveUp: Record<string, { reason: string; ids: string[] }>;
  /** Ids still queued locally that could not be moved: every destination refused, or their destination did. */
  left: string[];
  stopped: boolean;
}

export class Distributor {
  private readonly held: Map<string, Batch[]>;
  private readonly free: Batch[] = [];
  /** Held for a destination that then refused for good: they can go nowhere else, and stay queued here. */
  private readonly stuck: Batch[] = [];
  private readonly never = new Map<string, string>();
  private readonly gaveUp = new Map<string, { reason: string; ids: string[] }>();
  /** Per destination, when its current run of held failures began (cleared by any answer from it: GiveUpOptions.afterMs). */
  private readonly failingSince = new Map<string, number>();
  private readonly giveUp: GiveUpOptions;
  private readonly moved: Record<string, number> = {};
  private readonly refused: DistributionResult['refused'] = [];
  private cursor = 0;
  private inflight = 0;
  private exhausted = false;
  private stopping = false;
  private failuresInARow = 0;
  private readonly sleepers = new Set<() => void>();

  constructor(private readonly o: DistributorOptions) {
    this.held = o.held ?? new Map();
    // A field left undefined (a flag not given) keeps its default.
    this.giveUp = { maxAttempts: o.giveUp?.maxAttempts ?? DEFAULT_GIVE_UP.maxAttempts, afterMs: o.giveUp?.afterMs ?? DEFAULT_GIVE_UP.afterMs };
    for (const c of o.clients) this.moved[c.address.label] = 0;
  }

  /** SIGTERM/SIGINT: take nothing new; the batches in flight finish and their acknowledged ids are removed. */
  stop(): void {
    this.stopping = true;
    for (const wake of this.sleepers) wake();
  }

  /** Messages acknowledged so far, per destination. */
  progress(): Record<string, number> {
    return { ...this.moved };
  }

  async run(): Promise<DistributionResult> {
    await Promise.all(Array.from({ length: this.o.concurrency }, () => this.sender()));
    const left = [...this.free, ...this.stuck, ...[...this.held.values()].flat()].flatMap((b) => b.ids);
    return { moved: this.moved, refused: this.refused, never: Object.fromEntries(this.never), gaveUp: Object.fromEntries(this.gaveUp), left, stopped: this.stopping };
  }

  /** Refuses for good, or given up: it gets nothing more. */
  private out(label: string): boolean {
    return this.never.has(label) || this.gaveUp.has(label);
  }

  private usable(): DestinationClient[] {
    return this.o.clients.filter((c) => !this.out(c.address.label));
  }

  /** The next destination in the rotation that can take something now. */
  private nextDestination(): DestinationClient | undefined {
    const n = this.o.clients.length;
    for (let i = 0; i < n; i++) {
      const c = this.o.clients[this.cursor++ % n];
      const label = c.address.label;
      if (this.out(label)) continue;
      if (this.o.heldOnly?.has(label) && !(this.held.get(label)?.length)) continue;
      return c;
    }
    return undefined;
  }

  private pendingAnywhere(): boolean {
    if (this.free.length > 0 || !this.exhausted || this.inflight > 0) return true;
    for (const [label, list] of this.held) if (list.length > 0 && !this.out(label)) return true;
    return false;
  }

  private async sender(): Promise<void> {
    for (;;) {
      if (this.stopping) return;
      if (this.usable().length === 0) return; // every destination refuses for good: exit 12
      const dest = this.nextDestination();
      let batch: Batch | undefined;
      let target = dest;
      if (dest) batch = this.held.get(dest.address.label)?.shift();
      const sticky = batch !== undefined;
      if (!batch) {
        batch = this.free.shift();
        if (!batch && !this.exhausted) {
          batch = await this.o.nextBatch();
          if (!batch) this.exhausted = true;
        }
        // A fresh batch never goes to a destination kept only for what the journal holds.
        if (batch && (!target || this.o.heldOnly?.has(target.address.label))) target = this.usable().find((c) => !this.o.heldOnly?.has(c.address.label));
        if (batch && !target) {
          this.free.unshift(batch);
          return;
        }
      }
      if (!batch || !target) {
        if (!this.pendingAnywhere()) return;
        await this.pause(50); // others are in flight, or a held batch waits for its destination's turn
        continue;
      }
      this.inflight++;
      try {
        await this.deliver(batch, target, sticky);
      } finally {
        this.inflight--;
      }
    }
  }

  /**
   * Sends a batch to `first`, then on to the next destinations while it
   * certainly was not taken. A `sticky` batch (held: an earlier request with
   * it may have been taken by `first`) never goes anywhere else, whatever this
   * request's answer: that earlier one may still be there.
   */
  private async deliver(batch: Batch, first: DestinationClient, sticky: boolean): Promise<void> {
    let dest = first;
    const body = encodeBatch(batch.records);
    for (let tried = 0; ; tried++) {
      const label = dest.address.label;
      this.o.journal.append({ dest: label, ids: batch.ids, at: Date.now() });
      const outcome: SendOutcome = await dest.sendBatch(body, batch.ids);
      if (outcome.kind === 'answered') {
        this.failuresInARow = 0;
        this.failingSince.delete(label);
        await this.settle(label, outcome);
        return;
      }
      if (outcome.kind === 'never' && outcome.status === 413) {
        this.failingSince.delete(label); // an answer: it is alive (GiveUpOptions.afterMs)
        // Too large for this destination's drain.max_batch_bytes (a batch is up to 8MB plus one
        // message of up to 25MB): not taken, and the destination is fine. Halves go back in line
        // (a held batch's stay with this destination); one message alone is refused here, kept queued.
        // A held batch stays journaled to this destination: an earlier request with it may have been taken.
        if (!sticky) this.o.journal.append({ released: batch.ids, dest: label, at: Date.now() });
        // Given up (or refusing) while this one was in flight: it goes nowhere, split or not, one
        // message or more; it stays here, named with the rest (not "refused": an earlier request
        // with it may have been taken there).
        if (sticky && this.out(label)) return this.keep(label, batch);
        if (batch.ids.length === 1) {
          this.refused.push({ id: batch.ids[0], dest: label, reason: outcome.reason });
          return;
        }
        const half = Math.ceil(batch.records.length / 2);
        const parts = [batch.records.slice(0, half), batch.records.slice(half)].map((records) => ({ ids: records.map((r) => r.header.id), records }));
        if (sticky) this.held.set(label, [...parts, ...(this.held.get(label) ?? [])]);
        else this.free.unshift(...parts);
        return;
      }
      if (outcome.kind === 'never') {
        if (!this.never.has(label)) this.o.onProblem?.({ dest: label, reason: outcome.reason, kind: 'never' });
        this.never.set(label, outcome.reason);
        // What the journal held for it can go nowhere else now: it stays queued here (exit 12).
        this.stuck.push(...(this.held.get(label) ?? []));
        this.held.delete(label);
        if (sticky) return this.keep(label, batch);
      } else if (sticky || !outcome.untaken) {
        // It may be there: only this destination may get it, on its next turn.
        this.o.onProblem?.({ dest: label, reason: outcome.reason, kind: 'held' });
        this.holdFor(label, batch, outcome.reason);
        await this.backoff();
        return;
      } else this.o.onProblem?.({ dest: label, reason: outcome.reason, kind: 'retry' });
      if (batch.ids.length > 0) this.o.journal.append({ released: batch.ids, dest: label, at: Date.now() });
      const others = this.usable().filter((c) => c !== dest && !this.o.heldOnly?.has(c.address.label));
      if (this.stopping || tried + 1 >= this.usable().length || others.length === 0) {
        // Every destination failed it this round: back in line, after a pause.
        this.free.unshift(batch);
        await this.backoff();
        return;
      }
      dest = this.nextDestination() ?? others[0];
      if (dest === first || this.o.heldOnly?.has(dest.address.label)) dest = others[0];
    }
  }

  /** Keeps `batch` for `label` only; gives `label` up once the bound is reached (GiveUpOptions). */
  private holdFor(label: string, batch: Batch, reason: string): void {
    batch.tries = (batch.tries ?? 0) + 1;
    if (this.out(label)) return this.keep(label, batch);
    const now = (this.o.now ?? Date.now)();
    const since = this.failingSince.get(label) ?? now;
    this.failingSince.set(label, since);
    const list = [...(this.held.get(label) ?? []), batch];
    if (batch.tries < this.giveUp.maxAttempts && now - since < this.giveUp.afterMs) {
      this.held.set(label, list);
      return;
    }
    // Not released in the journal: a rerun sends these to this destination only, and an MTA started instead asks it.
    this.held.delete(label);
    this.stuck.push(...list);
    const why = `${batch.tries >= this.giveUp.maxAttempts ? `${batch.tries} sends of one batch without an answer that settles it` : `${Math.round((now - since) / 1000)} s with no answer from it`} (last: ${reason})`;
    this.gaveUp.set(label, { reason: why, ids: list.flatMap((b) => b.ids) });
    this.o.onProblem?.({ dest: label, reason: `given up after ${why}`, kind: 'gave-up' });
  }

  /**
   * A batch held for `label` after it was given up (or refused for good)
   * while the batch was in flight: it stays here, journaled to it, and is
   * named with the given-up ids (the result must list every id that may be there).
   */
  private keep(label: string, batch: Batch): void {
    this.stuck.push(batch);
    this.gaveUp.get(label)?.ids.push(...batch.ids);
  }

  private async settle(label: string, outcome: Extract<SendOutcome, { kind: 'answered' }>): Promise<void> {
    const acked: string[] = [];
    const refusedIds: string[] = [];
    let duplicates = 0;
    for (const r of outcome.results) {
      if (r.status === 'queued' || r.status === 'duplicate') {
        acked.push(r.id);
        if (r.status === 'duplicate') duplicates++;
      } else {
        refusedIds.push(r.id);
        this.refused.push({ id: r.id, dest: label, reason: r.reason ?? 'refused' });
      }
    }
    await this.o.remove(acked);
    this.o.journal.append({ removed: acked, at: Date.now() });
    if (refusedIds.length) this.o.journal.append({ released: refusedIds, dest: label, at: Date.now() });
    this.moved[label] = (this.moved[label] ?? 0) + acked.length;
    this.o.onProgress?.({ dest: label, moved: acked.length, duplicates });
  }

  private async backoff(): Promise<void> {
    this.failuresInARow++;
    const factor = Math.min(16, 2 ** Math.min(4, Math.floor(this.failuresInARow / Math.max(1, this.o.clients.length))));
    await this.pause(this.o.retryDelayMs * factor);
  }

  private pause(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }
}
