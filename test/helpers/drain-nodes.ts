// Small in-process drain nodes for tests of what several nodes' drains and
// reconciles do to one message: each has a real DrainEndpoint over HTTPS on
// 127.0.0.1 with its own dedupe store (SeenIds) and journal, and a spool that
// is a set of ids. A node can drain an id to another (journaled first, as
// `volley drain` does; the answer is lost: killed), be "started instead of a
// rerun" (its DrainHolds built from the journal, as primary.ts does) and run
// its reconcile. `earlier: true` makes a node of an earlier release: its
// `have` answers from the dedupe store alone, its reconcile forgets nothing.
import { join } from 'node:path';
import pino from 'pino';
import { DrainEndpoint } from '../../runtime/mta/drain/endpoint';
import { encodeBatch, type DrainRecord } from '../../runtime/mta/drain/protocol';
import { SeenIds, seenIdsPath } from '../../runtime/mta/drain/seen-ids';
import { DestinationClient, parseDestination, type SendOutcome } from '../../runtime/mta/drain/source/destination-client';
import { DrainHolds, type HoldsAnswer } from '../../runtime/mta/drain/source/holds';
import { Journal, journalPath } from '../../runtime/mta/drain/source/journal';
import { RELEASE_AFTER_MS, reconcileAtStart, writeClientSettings } from '../../runtime/mta/drain/source/reconcile';
import { parseConfig } from '../../runtime/shared/config/load';
import { testConfigYaml } from './config';
import { proxyTls } from './proxy-fixtures';

const silent = pino({ level: 'silent' });

export interface DrainNode {
  name: string;
  pp: string;
  label: string;
  seen: SeenIds;
  /** The ids queued here. */
  spool: Set<string>;
  /** Held ids handed to delivery (by the reconcile, or kept by `have`). */
  released: string[];
  /** Built by start(): undefined until the node is "started instead of a rerun". */
  holds?: DrainHolds;
  /** Every answer its DrainHolds gave `have` (a node of this release). */
  answers: HoldsAnswer[];
  /** Builds its DrainHolds from the journal as it is now (the MTA's start). */
  start(): void;
  close(): Promise<void>;
}

export interface DrainNodeOptions {
  secret: Buffer;
  /** A node of an earlier release: `have` from the dedupe store alone, no forget in its reconcile. */
  earlier?: boolean;
  /** Awaited before each `have` is decided: lets a test hold answers until every question is asked. */
  beforeAnswer?: () => Promise<void>;
  /** Awaited after each `have` is decided, before it is sent: an answer slow on the way back. */
  afterAnswer?: () => Promise<void>;
  /** Where its persistent path goes (default `<dir>/<name>`). */
  persistentPath?: string;
}

function message(id: string): DrainRecord {
  const body = Buffer.from('Subject: drained\r\n\r\nhello\r\n');
  return { header: { id, from: 'sender@shop.test', to: ['a@far.test'], received: 1, expires: Date.now() + 86_400_000, attempts: 0, via_original: 'smtp', size: body.length }, body };
}

export async function startDrainNode(dir: string, name: string, options: DrainNodeOptions): Promise<DrainNode> {
  const pp = options.persistentPath ?? join(dir, name);
  const config = parseConfig(`${testConfigYaml()}drain: { accept_from: [127.0.0.1/32] }\n`).drain!;
  const seen = await SeenIds.open(seenIdsPath(pp), config.dedupeRetentionMs, { fsync: false });
  const tls = await proxyTls(join(dir, `${name}-tls`));
  const spool = new Set<string>();
  const node: DrainNode = {
    name,
    pp,
    label: '',
    seen,
    spool,
    released: [],
    answers: [],
    start() {
      if (options.earlier) return;
      node.holds = new DrainHolds({ persistentPath: pp, release: async (ids) => void node.released.push(...ids), logger: silent });
    },
    async close() {
      await endpoint.close();
      node.holds?.close();
      await seen.close();
    },
  };
  const endpoint = new DrainEndpoint({
    config,
    nodeId: name,
    secrets: [options.secret],
    tls,
    seen,
    store: async (records) => records.map((r) => (spool.has(r.header.id) ? { status: 'duplicate' as const } : (spool.add(r.header.id), { status: 'queued' as const }))),
    holds: options.earlier
      ? undefined
      : {
          answer: async (ids, has) => {
            await options.beforeAnswer?.();
            const answer = node.holds ? await node.holds.answer(ids, has) : { have: ids.filter(has), unknown: [] };
            node.answers.push(answer);
            await options.afterAnswer?.();
            return answer;
          },
          isHeld: (id) => node.holds?.isHeld(id) ?? false,
          takeHeld: async (take, taken) => (node.holds ? node.holds.takeHeld(take, taken) : { result: await take(), cannot: [] }),
        },
    unavailable: () => undefined,
    logger: silent,
  });
  node.label = `127.0.0.1:${await endpoint.listen({ address: '127.0.0.1', port: 0 })}`;
  writeClientSettings(pp, { insecure: true });
  return node;
}

/**
 * `from` drains `id` to `to` and is killed before the answer: journaled first;
 * `arrive` false: killed before the request reached `to` too.
 */
export async function drainKilled(from: DrainNode, to: DrainNode, id: string, at: number, secret: Buffer, arrive: boolean): Promise<void> {
  const j = new Journal(journalPath(from.pp));
  j.append({ dest: to.label, ids: [id], at });
  j.close();
  if (!arrive) return;
  const c = new DestinationClient(parseDestination(to.label), { secret, node: from.name, insecure: true, timeoutMs: 30_000, maxSockets: 1 });
  try {
    const sent = await c.sendBatch(encodeBatch([message(id)]), [id]);
    if (sent.kind !== 'answered' || sent.results[0]?.status !== 'queued') throw new Error(`${to.name} did not queue ${id}: ${JSON.stringify(sent)}`);
  } finally {
    c.close();
  }
}

/**
 * `from` is drained (`volley drain`, its MTA stopped) and sends `id` to `to`:
 * journaled first; once answered `queued` or `duplicate` it is removed there
 * as the drain removes it (forgotten by its dedupe store, then done, then
 * journaled removed). Resolves with what `to` answered.
 */
export async function drainOnce(from: DrainNode, to: DrainNode, id: string, secret: Buffer): Promise<SendOutcome> {
  const j = new Journal(journalPath(from.pp));
  try {
    j.append({ dest: to.label, ids: [id], at: Date.now() });
    const c = new DestinationClient(parseDestination(to.label), { secret, node: from.name, insecure: true, timeoutMs: 30_000, maxSockets: 1 });
    const sent = await c.sendBatch(encodeBatch([message(id)]), [id]).finally(() => c.close());
    if (sent.kind === 'answered' && (sent.results[0]?.status === 'queued' || sent.results[0]?.status === 'duplicate')) {
      await from.seen.forget([id]);
      from.spool.delete(id);
      j.append({ removed: [id], at: Date.now() });
    }
    return sent;
  } finally {
    j.close();
  }
}

/**
 * The node's reconcile, as an MTA started instead of a rerun runs it, late
 * enough that "not here" is trusted; `beforeForget` is awaited before its
 * dedupe store forgets what it removes (a test holds the reconcile there).
 */
export function reconcileNode(n: DrainNode, secret: Buffer, t0: number, beforeForget?: () => Promise<void>): Promise<void> {
  return reconcileAtStart({
    persistentPath: n.pp,
    nodeId: n.name,
    secret: () => secret,
    logger: silent,
    retryMs: 10,
    now: () => t0 + RELEASE_AFTER_MS,
    settle: async (remove, release) => {
      for (const id of remove) n.spool.delete(id);
      n.released.push(...release);
    },
    holds: n.holds,
    forget: n.holds
      ? async (ids) => {
          await beforeForget?.();
          await n.seen.forget(ids);
        }
      : undefined,
  });
}
