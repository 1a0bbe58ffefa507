// An MTA that starts where a drain was killed (SIGKILL, a power cut) and
// not rerun: the drain's journal names messages it sent to a destination
// without hearing the answer. They may be queued there already, so this node
// must not deliver them until that destination says: the workers hold them
// back from delivery (heldAtStart), and the primary asks the destination
// (POST /drain/v1/have) until it answers; what it has is removed here
// (reason `drained`) and forgotten by this node's dedupe store, the rest
// released to delivery, and the journal settled. Every such decision is made
// under DrainHolds' lock, with the journal re-read (holds.ts).
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import type { Logger } from 'pino';
import { DestinationClient, parseDestination } from './destination-client';
import { DrainHolds, heldAtStart } from './holds';
import { Journal, journalPath, readJournal, unsettled } from './journal';

export { heldAtStart };

/** How the drain reached its destinations (no secret in it: the secret file's path), for the MTA's own questions later. */
export interface DrainClientSettings {
  secretFile?: string;
  ca?: string;
  insecure?: boolean;
  bindIp?: string;
}

export function clientSettingsPath(persistentPath: string): string {
  return join(dirname(journalPath(persistentPath)), 'client.json');
}

export function writeClientSettings(persistentPath: string, s: DrainClientSettings): void {
  writeFileSync(clientSettingsPath(persistentPath), `${JSON.stringify(s)}\n`, { mode: 0o600 });
}

function readClientSettings(persistentPath: string): DrainClientSettings {
  const file = clientSettingsPath(persistentPath);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as DrainClientSettings) : {};
}

/**
 * A destination may still be committing the last request of a drain killed a
 * moment ago: its "I do not have it" is only trusted for what was sent this
 * long ago. (What it says it has is removed at once.)
 */
export const RELEASE_AFTER_MS = 2 * 60_000;

export interface ReconcileOptions {
  persistentPath: string;
  nodeId: string;
  /** The drain secret (the drain's --secret-file, else drain.secret_file / VOLLEY_DRAIN_SECRET); undefined: none. */
  secret: (secretFile: string | undefined) => Buffer | undefined;
  /** Every worker removes `remove` (done, `drained`) and delivers `release` from now on. */
  settle: (remove: string[], release: string[]) => Promise<void>;
  logger: Logger;
  retryMs?: number;
  now?: () => number;
  /** Shared with the drain endpoint's `have` (one lock for both); one of its own when not given. */
  holds?: DrainHolds;
  /**
   * This node's dedupe store forgets ids whose copy is removed here because
   * the destination has it (SeenIds.forget; resolves once durable). Without
   * it this node would go on saying "I have it" for a copy it no longer
   * holds, and the node that holds the only one could remove it on that word.
   */
  forget?: (ids: string[]) => Promise<void>;
}

/** Runs until every id the journal left open is settled; resolves at once when there is none. */
export async function reconcileAtStart(o: ReconcileOptions): Promise<void> {
  const file = journalPath(o.persistentPath);
  let open: Map<string, string>;
  const lastSent = new Map<string, number>();
  try {
    const lines = readJournal(file);
    open = unsettled(lines);
    for (const l of lines) if ('ids' in l) lastSent.set(l.dest, Math.max(lastSent.get(l.dest) ?? 0, l.at));
  } catch (err) {
    o.logger.error({ err, file }, 'drain journal unreadable: its messages are delivered as usual (rerun `volley drain` to settle them)');
    return;
  }
  if (open.size === 0) return;
  const settings = readClientSettings(o.persistentPath);
  const secret = o.secret(settings.secretFile);
  o.logger.warn({ messages: open.size, destinations: [...new Set(open.values())] }, 'an interrupted drain sent these messages without hearing back: held from delivery until their destination says whether it has them');
  if (!secret) {
    o.logger.error('no drain secret to ask with: the held messages stay held; run `volley drain` (it settles them) or set drain.secret_file');
    return;
  }
  const byDest = new Map<string, string[]>();
  for (const [id, dest] of open) byDest.set(dest, [...(byDest.get(dest) ?? []), id]);
  const journal = new Journal(file);
  const holds = o.holds ?? new DrainHolds({ persistentPath: o.persistentPath, release: (ids) => o.settle([], ids), logger: o.logger });
  /**
   * Under the holds' lock, with the journal re-read: an id this node's `have`
   * committed to keep meanwhile (released) is no longer held, and is neither
   * removed nor asked about again. Resolves with the ids to ask about again.
   */
  const decide = async (dest: string, asked: string[], have: ReadonlySet<string>, unknown: ReadonlySet<string>, late: boolean): Promise<string[]> => {
    const open = holds.open();
    const ids = asked.filter((id) => open.get(id) === dest);
    let remove = ids.filter((id) => have.has(id));
    if (remove.length > 0 && o.forget) {
      // Forgotten before removed: once this copy is gone, this node must answer "no" (were it killed
      // between the two, "no" while it still holds a copy costs a duplicate at worst, never the only copy).
      // The price: a node that sent this message here earlier (and was killed before the answer) and asks
      // only now hears "no" and delivers its copy beside the one the destination has: a duplicate, where
      // a "yes" could cost the last copy.
      try {
        await o.forget(remove);
      } catch (err) {
        o.logger.error({ err, dest, ids: remove.length }, 'drain: forgetting held messages the destination has failed: kept held here, asked again');
        remove = [];
      }
    }
    const removing = new Set(remove);
    // What it cannot say yet (a store unanswered there) is neither removed nor released.
    const release = late ? ids.filter((id) => !have.has(id) && !unknown.has(id)) : [];
    await o.settle(remove, release);
    if (remove.length) journal.append({ removed: remove, at: Date.now() });
    if (release.length) journal.append({ released: release, dest, at: Date.now() });
    holds.settled([...remove, ...release]);
    o.logger.info({ dest, removed: remove.length, released: release.length }, 'held drain messages settled');
    if (unknown.size > 0) o.logger.warn({ dest, unknown: unknown.size }, 'a drain destination cannot say yet whether it stored some held messages (a store unanswered there): they stay held; asked again');
    return late ? ids.filter((id) => unknown.has(id) || (have.has(id) && !removing.has(id))) : ids.filter((id) => !removing.has(id));
  };
  try {
    for (;;) {
      for (const [dest, ids] of [...byDest]) {
        const client = new DestinationClient(parseDestination(dest), {
          secret,
          node: o.nodeId,
          ca: settings.ca ? Buffer.from(settings.ca) : undefined,
          insecure: settings.insecure,
          localAddress: settings.bindIp,
          timeoutMs: 30_000,
          maxSockets: 1,
        });
        const answer = await client.have(ids);
        client.close();
        if (answer === undefined) {
          o.logger.warn({ dest, held: ids.length }, 'a drain destination cannot answer about held messages now: they stay held; asked again');
          continue;
        }
        if ('never' in answer) {
          o.logger.error({ dest, reason: answer.never }, 'a drain destination will not answer about held messages: they stay held; run `volley drain`');
          byDest.delete(dest);
          continue;
        }
        const { have, unknown } = answer;
        const late = (o.now ?? Date.now)() - (lastSent.get(dest) ?? 0) >= RELEASE_AFTER_MS;
        const rest = await holds.run(() => decide(dest, ids, have, unknown, late));
        if (rest.length) byDest.set(dest, rest); // asked again once the last request to it is old enough
        else byDest.delete(dest);
      }
      if (byDest.size === 0) break;
      await new Promise((r) => setTimeout(r, o.retryMs ?? 30_000).unref()); // unref: a stopping node does not wait for it
    }
    await holds.run(async () => {
      if (holds.open().size === 0) journal.retire();
    });
  } finally {
    journal.close();
  }
}
