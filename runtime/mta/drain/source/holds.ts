// The messages this node holds for its own interrupted drain (reconcile.ts),
// and the one lock under which every decision about them is made: the
// reconcile's "the destination has it: remove ours", the drain endpoint's
// "yes, we have it" to another node's question, and its `duplicate` answer to
// another node's batch. Two nodes can each hold the other's copy (X->B, B->A
// answer lost, A->B lost): if both answered "yes" (or `duplicate`) from their
// dedupe store or spool and both then removed theirs, no copy would be left.
// So a "yes" or a `duplicate` for an id held here is given only once this node
// has committed to keep it (journaled released, durable, before the answer),
// and the reconcile removes an id only if, under the same lock, it is still
// held. A batch carrying a held id is looked up and stored under that lock
// too, so that no removal falls between its look-up and its answer (which
// would answer `duplicate` for a copy just removed). Two questions at once
// then end in two kept copies (a duplicate), never in none.
// Keeping also costs a duplicate when this node's own drain had reached its
// destination too (X->A->B, both answers lost, X asks A first): A keeps, B
// may hold a copy. Loss outranks a duplicate.
//
// The journal's state is read once, at start, and kept here: while the MTA
// runs, nothing but this process writes the journal. `volley drain` writes it
// only while holding the persistent path's lock (run-drain.ts: it stops the
// MTA and waits for its lock, mta-control.ts, or takes it at once when the MTA
// is not running), and the MTA's primary holds that lock for its whole life
// (primary.ts, lockPersistentPath) from before this is built. So every change
// to the journal after the start is one of the appends below, and a decision
// costs the ids it is about, not a re-read of the whole journal.
import type { Logger } from 'pino';
import { Journal, journalPath, readJournal, unsettled, type JournalLine } from './journal';

/** The ids a worker must not deliver yet: what the journal sent somewhere and never settled. */
export function heldAtStart(persistentPath: string): Set<string> {
  try {
    return new Set(unsettled(readJournal(journalPath(persistentPath))).keys());
  } catch {
    // A journal that cannot be read holds nothing back here; the primary says why (reconcile.ts).
    return new Set();
  }
}

export interface DrainHoldsOptions {
  persistentPath: string;
  /** The workers deliver these held ids from now on (the reconcile's settle, with nothing to remove). */
  release: (ids: string[]) => Promise<void>;
  /**
   * Whether a store of this node for `id` is in flight or unsettled (PrimaryDrain.isStoring): its
   * late answer would record the id seen after a removal, and `duplicate` would then be answered
   * for a copy that is gone. The reconcile does not remove such an id yet (asked again next round).
   */
  storing?: (id: string) => boolean;
  logger: Logger;
}

/** What `have` may say about some ids: held here or not, decided under the lock. */
export interface HoldsAnswer {
  have: string[];
  /** Held here and in the dedupe store, but the commitment to keep them could not be journaled: the asker asks again. */
  unknown: string[];
}

export class DrainHolds {
  private chain: Promise<unknown> = Promise.resolve();
  /** Still held: each id and the destination its drain sent it to (the journal's unsettled ids, kept up to date here). */
  private readonly open: Map<string, string>;
  /** When the journal last sent each destination a batch. */
  private readonly lastSent = new Map<string, number>();
  /**
   * Being removed now (the reconcile, under the lock): still "held" for `isHeld`, so a batch naming
   * one waits for the lock, until the workers confirmed the removal and `removed` is journaled.
   */
  private readonly removal = new Set<string>();
  /**
   * Their removal failed or timed out part-way: a copy may or may not be left here. Never answered
   * "yes", `duplicate` or `queued` (a 500 / unknown: asked again) until the next start, which reads
   * the journal and asks their destination again.
   */
  private readonly uncertain = new Set<string>();
  private journal?: Journal;
  readonly file: string;
  /** Why the journal could not be read at start: then nothing is held here (the workers hold nothing back either). */
  readonly unreadable?: Error;

  constructor(private readonly options: DrainHoldsOptions) {
    this.file = journalPath(options.persistentPath);
    let lines: JournalLine[] = [];
    try {
      lines = readJournal(this.file);
    } catch (err) {
      this.unreadable = err as Error;
    }
    this.open = unsettled(lines);
    for (const l of lines) if ('ids' in l) this.lastSent.set(l.dest, Math.max(this.lastSent.get(l.dest) ?? 0, l.at));
  }

  /** Runs `fn` after every earlier one (one decision at a time). */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Whether `id` is held here now (no lock: the endpoint's snapshot before it looks an id up). */
  isHeld(id: string): boolean {
    return this.open.has(id) || this.removal.has(id) || this.uncertain.has(id);
  }

  /** Whether `id`'s removal here failed part-way (see `uncertain`). */
  isUncertain(id: string): boolean {
    return this.uncertain.has(id);
  }

  /** Whether a store of this node for `id` is unsettled or in flight (DrainHoldsOptions.storing). */
  isStoring(id: string): boolean {
    return this.options.storing?.(id) ?? false;
  }

  /** The destination a held id was sent to; undefined once settled. */
  destinationOf(id: string): string | undefined {
    return this.open.get(id);
  }

  /** The held ids, by the destination each was sent to. */
  byDestination(): Map<string, string[]> {
    const by = new Map<string, string[]>();
    // push, not a spread per id: 40,000 ids were quadratic on the primary's loop.
    for (const [id, dest] of this.open) {
      const list = by.get(dest);
      if (list) list.push(id);
      else by.set(dest, [id]);
    }
    return by;
  }

  get size(): number {
    return this.open.size;
  }

  /** When the journal last sent `dest` a batch (0: never). */
  lastSentTo(dest: string): number {
    return this.lastSent.get(dest) ?? 0;
  }

  /**
   * These held copies are being removed (the reconcile, after they were
   * forgotten): no longer open (no later answer keeps a copy that may be
   * gone), but still held for `isHeld` until `removed` (or `removalFailed`),
   * so a batch naming one waits for the lock the reconcile holds throughout. Call under `run`.
   */
  removing(ids: readonly string[]): void {
    for (const id of ids) {
      this.open.delete(id);
      this.removal.add(id);
    }
  }

  /** The workers removed these and `removed` is journaled (record does both): no longer held. */
  private removed(ids: readonly string[]): void {
    for (const id of ids) {
      this.open.delete(id);
      this.removal.delete(id);
    }
  }

  /** The removal of these failed or timed out, or could not be journaled: uncertain until the next start. Call under `run`. */
  removalFailed(ids: readonly string[]): void {
    for (const id of ids) {
      this.removal.delete(id);
      this.uncertain.add(id);
    }
  }

  /** Appends `line` (synced) and applies it here; throws, and changes nothing here, when it is not on disk. Call under `run`. */
  record(line: JournalLine): void {
    this.journal ??= new Journal(this.file);
    this.journal.append(line);
    if ('removed' in line) this.removed(line.removed);
    else if ('released' in line) {
      for (const id of line.released) if (this.open.get(id) === line.dest) this.open.delete(id);
    }
  }

  /** Nothing held any more: the journal is kept under another name (a new drain starts clean). Call under `run`. */
  retireIfSettled(): void {
    // An uncertain removal is not settled: the next start reads the journal and asks again.
    if (this.open.size > 0 || this.removal.size > 0 || this.uncertain.size > 0) return;
    (this.journal ?? new Journal(this.file)).retire();
    this.journal = undefined;
  }

  close(): void {
    this.journal?.close();
    this.journal = undefined;
  }

  /**
   * `have` for `ids`, with `seen` the dedupe store's answer. An id seen here
   * and held here is answered "yes" only after `{released}` for it is on disk
   * (this copy is then kept and delivered: no later answer removes it); if
   * that append fails it is answered unknown and stays held. An id the
   * reconcile removed meanwhile was forgotten first (reconcile.ts), so it is
   * answered "no" here: the asker keeps its copy.
   */
  answer(ids: readonly string[], seen: (id: string) => boolean): Promise<HoldsAnswer> {
    // One being removed is answered once its removal is done (under the lock): then "no", or unknown if it failed.
    if (!ids.some((id) => (this.open.has(id) && seen(id)) || this.removal.has(id) || this.uncertain.has(id))) return Promise.resolve({ have: ids.filter(seen), unknown: [] });
    return this.run(async () => {
      const unknown = await this.keep(ids.filter((id) => this.open.has(id) && seen(id)));
      for (const id of ids) if (this.uncertain.has(id)) unknown.add(id);
      return { have: ids.filter((id) => seen(id) && !unknown.has(id)), unknown: [...unknown] };
    });
  }

  /**
   * A batch that carries ids held here: `take` (the endpoint's look-ups in
   * the dedupe store and the spool, and its store) runs under the lock, so no
   * removal can fall between a look-up and the answer. An id it answers
   * `duplicate` or `queued` (`taken`) makes the sender remove its copy, as on
   * "yes": one still held is kept first (journaled released, handed to
   * delivery). Resolves with take's result and the ids whose keep could not
   * be journaled (the batch cannot be answered: a 500, sent again).
   */
  async takeHeld<T>(take: () => Promise<T>, taken: (result: T) => readonly string[]): Promise<{ result: T; cannot: string[] }> {
    return this.run(async () => {
      const result = await take();
      const ids = taken(result);
      const cannot = await this.keep(ids.filter((id) => this.open.has(id)));
      // A copy here may be gone (its removal failed part-way): never `duplicate` or `queued` for it.
      for (const id of ids) if (this.uncertain.has(id)) cannot.add(id);
      return { result, cannot: [...cannot] };
    });
  }

  /** Journals `ids` (held) released and hands them to delivery; resolves with those it could not journal. Under `run`. */
  private async keep(ids: readonly string[]): Promise<Set<string>> {
    const unknown = new Set<string>();
    const byDest = new Map<string, string[]>();
    for (const id of new Set(ids)) {
      const dest = this.open.get(id)!;
      const list = byDest.get(dest);
      if (list) list.push(id);
      else byDest.set(dest, [id]);
    }
    const kept: string[] = [];
    for (const [dest, released] of byDest) {
      try {
        // Durable before the answer: once the other node hears "yes" or `duplicate` it removes its copy.
        this.record({ released, dest, at: Date.now() });
        kept.push(...released);
      } catch (err) {
        for (const id of released) unknown.add(id);
        this.options.logger.error({ err, ids: released.length }, 'drain: journaling held messages as kept failed: answered unknown, still held (asked again)');
      }
    }
    if (kept.length > 0) {
      this.options.logger.warn({ ids: kept.length }, 'drain: another node asks about (or sends) messages held here for an interrupted drain: kept here and delivered (it removes its copy)');
      // Journaled released already: a failed hand-over leaves them held in the workers until the
      // next start, which delivers them (heldAtStart skips released ids). Never a loss.
      await this.options.release(kept).catch((err: unknown) => this.options.logger.error({ err, ids: kept.length }, 'drain: releasing kept messages to the workers failed; delivered after the next start'));
    }
    return unknown;
  }
}
