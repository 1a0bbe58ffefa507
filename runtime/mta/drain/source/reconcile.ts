// An MTA that starts where a drain was killed (SIGKILL, a power cut) and
// not rerun: the drain's journal names messages it sent to a destination
// without hearing the answer. They may be queued there already, so this node
// must not deliver them until that destination says: the workers hold them
// back from delivery (heldAtStart), and the primary asks the destination
// (POST /drain/v1/have) until it answers; what it has is removed here
// (reason `drained`) and forgotten by this node's dedupe store, the rest
// released to delivery, and the journal settled. Every such decision is made
// under DrainHolds' lock, on the journal's state the holds keep (holds.ts).
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import type { Logger } from 'pino';
import { DestinationClient, parseDestination } from './destination-client';
import { DrainHolds, heldAtStart } from './holds';
import { journalPath } from './journal';

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
  // The journal is read once, by the holds (at the MTA's start when shared); every decision below uses their state.
  const holds = o.holds ?? new DrainHolds({ persistentPath: o.persistentPath, release: (ids) => o.settle([], ids), logger: o.logger });
  try {
    await reconcile(o, holds);
  } finally {
    if (!o.holds) holds.close();
  }
}

async function reconcile(o: ReconcileOptions, holds: DrainHolds): Promise<void> {
  if (holds.unreadable) {
    o.logger.error({ err: holds.unreadable, file: holds.file }, 'drain journal unreadable: its messages are delivered as usual (rerun `volley drain` to settle them)');
    return;
  }
  if (holds.size === 0) return;
  const settings = readClientSettings(o.persistentPath);
  const secret = o.secret(settings.secretFile);
  const byDest = holds.byDestination();
  o.logger.warn({ messages: holds.size, destinations: [...byDest.keys()] }, 'an interrupted drain sent these messages without hearing back: held from delivery until their destination says whether it has them');
  if (!secret) {
    o.logger.error('no drain secret to ask with: the held messages stay held; run `volley drain` (it settles them) or set drain.secret_file');
    return;
  }
  /**
   * Under the holds' lock: an id this node kept meanwhile (its endpoint
   * answered "yes" or `duplicate` for it, released) is no longer held, and is
   * neither removed nor asked about again. Resolves with the ids to ask about again.
   */
  const decide = async (dest: string, asked: string[], have: ReadonlySet<string>, unknown: ReadonlySet<string>, late: boolean): Promise<string[]> => {
    const ids = asked.filter((id) => holds.destinationOf(id) === dest);
    // Not while a store of this node for it is in flight or unsettled: its late answer would record it
    // seen after the removal, and a resend would be answered `duplicate` for a copy that is gone. Asked again.
    let remove = ids.filter((id) => have.has(id) && !holds.isStoring(id));
    const storing = ids.filter((id) => have.has(id) && holds.isStoring(id)).length;
    // Said each round: it lasts until that store settles, which for a worker that never answers is its restart.
    if (storing > 0) o.logger.warn({ dest, storing }, 'held drain messages the destination has are kept here while a store of this node for them is unanswered or unsettled: asked again; if this lasts, restart the MTA (a restarted worker settles its stores)');
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
    // No longer kept from here on, yet still held (a batch naming one waits for this lock) until the
    // workers removed them and `removed` is journaled: a `duplicate` looked up earlier is withdrawn (holds.ts).
    holds.removing(remove);
    // What it cannot say yet (a store unanswered there) is neither removed nor released.
    const release = late ? ids.filter((id) => !have.has(id) && !unknown.has(id)) : [];
    try {
      await o.settle(remove, release);
      if (remove.length) holds.record({ removed: remove, at: Date.now() });
    } catch (err) {
      // Some copies may be gone, some not: neither assumed removed nor kept. Uncertain (never "yes",
      // `duplicate` or `queued`) until the next start, which reads the journal and asks again.
      holds.removalFailed(remove);
      throw err;
    }
    if (release.length) holds.record({ released: release, dest, at: Date.now() });
    o.logger.info({ dest, removed: remove.length, released: release.length }, 'held drain messages settled');
    if (unknown.size > 0) o.logger.warn({ dest, unknown: unknown.size }, 'a drain destination cannot say yet whether it stored some held messages (a store unanswered there): they stay held; asked again');
    return late ? ids.filter((id) => unknown.has(id) || (have.has(id) && !removing.has(id))) : ids.filter((id) => !removing.has(id));
  };
  for (;;) {
    for (const [dest, asking] of [...byDest]) {
      // Kept here meanwhile (released by the endpoint's "yes" or `duplicate`): nothing left to ask about.
      const ids = asking.filter((id) => holds.destinationOf(id) === dest);
      if (ids.length === 0) {
        byDest.delete(dest);
        continue;
      }
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
        byDest.set(dest, ids);
        continue;
      }
      if ('never' in answer) {
        o.logger.error({ dest, reason: answer.never }, 'a drain destination will not answer about held messages: they stay held; run `volley drain`');
        byDest.delete(dest);
        continue;
      }
      const { have, unknown } = answer;
      const late = (o.now ?? Date.now)() - holds.lastSentTo(dest) >= RELEASE_AFTER_MS;
      const rest = await holds.run(() => decide(dest, ids, have, unknown, late));
      if (rest.length) byDest.set(dest, rest); // asked again once the last request to it is old enough
      else byDest.delete(dest);
    }
    if (byDest.size === 0) break;
    await new Promise((r) => setTimeout(r, o.retryMs ?? 30_000).unref()); // unref: a stopping node does not wait for it
  }
  await holds.run(async () => holds.retireIfSettled());
}
