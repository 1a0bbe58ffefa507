// The messages this node holds for its own interrupted drain (reconcile.ts),
// and the one lock under which every decision about them is made: the
// reconcile's "the destination has it: remove ours" and the drain endpoint's
// "yes, we have it" to another node's question. Two nodes can each hold the
// other's copy (X->B, B->A answer lost, A->B lost): if both answered "yes"
// from their dedupe store and both then removed theirs, no copy would be
// left. So `have` answers "yes" for an id held here only once this node has
// committed to keep it (journaled released, durable, before the answer),
// and the reconcile removes an id only if, re-read under the same lock, it is
// still held. Two questions at once then end in two kept copies (a
// duplicate), never in none. Keeping also costs a duplicate when this node's
// own drain had reached its destination too (X->A->B, both answers lost, X
// asks A first): A keeps, B may hold a copy. Loss outranks a duplicate.
import type { Logger } from 'pino';
import { Journal, journalPath, readJournal, unsettled } from './journal';

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
  /**
   * Held at start and not settled since: the fast check for every `have`. An
   * id leaves it only after its settlement is journaled (and, when removed,
   * after it was forgotten), so an id outside it needs no lock.
   */
  private readonly held: Set<string>;
  readonly file: string;

  constructor(private readonly options: DrainHoldsOptions) {
    this.file = journalPath(options.persistentPath);
    this.held = heldAtStart(options.persistentPath);
  }

  /** Runs `fn` after every earlier one (one decision at a time). */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Still held, from the journal re-read now: which destination each open id was sent to. Call under `run`. */
  open(): Map<string, string> {
    return unsettled(readJournal(this.file));
  }

  /** These ids are settled (their removal or release journaled). Call under `run`. */
  settled(ids: readonly string[]): void {
    for (const id of ids) this.held.delete(id);
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
    if (!ids.some((id) => this.held.has(id) && seen(id))) return Promise.resolve({ have: ids.filter(seen), unknown: [] });
    return this.run(async () => {
      const unknown = new Set<string>();
      let open: Map<string, string>;
      try {
        open = this.open();
      } catch (err) {
        // Cannot tell whether they are still held: no "yes" that could cost the only copy.
        for (const id of ids) if (this.held.has(id) && seen(id)) unknown.add(id);
        this.options.logger.error({ err, file: this.file }, 'drain: the journal cannot be read to answer for held messages: answered unknown (asked again)');
        return { have: ids.filter((id) => seen(id) && !unknown.has(id)), unknown: [...unknown] };
      }
      const keep = new Map<string, string[]>();
      for (const id of ids) {
        // Held at start and, re-read now, still open: a line a later `volley drain` added is not a hold.
        const dest = this.held.has(id) ? open.get(id) : undefined;
        if (dest !== undefined && seen(id)) keep.set(dest, [...(keep.get(dest) ?? []), id]);
      }
      const kept = new Set<string>();
      if (keep.size > 0) {
        let journal: Journal | undefined;
        try {
          journal = new Journal(this.file);
          for (const [dest, released] of keep) {
            // Durable before the answer: once the asker hears "yes" it removes its copy.
            journal.append({ released, dest, at: Date.now() });
            for (const id of released) kept.add(id);
            this.settled(released);
          }
        } catch (err) {
          for (const list of keep.values()) for (const id of list) if (!kept.has(id)) unknown.add(id);
          this.options.logger.error({ err, ids: unknown.size }, 'drain: journaling held messages as kept failed: answered unknown, still held (asked again)');
        } finally {
          journal?.close();
        }
      }
      if (kept.size > 0) {
        this.options.logger.warn({ ids: kept.size }, 'drain: another node asks about messages held here for an interrupted drain: kept here and delivered (it removes its copy)');
        // Journaled released already: a failed hand-over leaves them held in the workers until the
        // next start, which delivers them (heldAtStart skips released ids). Never a loss.
        await this.options.release([...kept]).catch((err: unknown) => this.options.logger.error({ err, ids: kept.size }, 'drain: releasing kept messages to the workers failed; delivered after the next start'));
      }
      return { have: ids.filter((id) => seen(id) && !unknown.has(id)), unknown: [...unknown] };
    });
  }
}
