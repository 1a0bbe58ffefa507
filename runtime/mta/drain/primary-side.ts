// The primary's half of the drain endpoint: it serves drain.listen, keeps the
// node-wide dedupe store, and has each message stored by the worker that owns
// its id (hash(id) % workers), so two batches carrying one id meet in one
// place. Buffers cross the cluster IPC with 'advanced' serialization (set in
// primary.ts): measured on the 2-core box, 20,000 2 KB records in ~0.4 s.
import type { Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { VolleyConfig } from '../../shared/config/types';
import { loadTls } from '../../shared/tls-files';
import type { ToWorker } from '../ipc';
import { DrainEndpoint, type DrainEndpointOptions, type StoreOutcome } from './endpoint';
import type { DrainRecord } from './protocol';
import { loadDrainSecrets } from './secrets';
import { SeenIds, seenIdsPath } from './seen-ids';
import { UnsettledStores } from './unsettled-stores';

/** How long a worker may take to make its share of a batch durable before the primary gives up on it (answered `unknown`: it may still store them). */
const STORE_TIMEOUT_MS = 60_000;

export interface PrimaryDrainOptions {
  config: VolleyConfig;
  persistentPath: string;
  nodeId: string;
  workerCount: number;
  workers: ReadonlyMap<number, Worker>;
  unavailable: () => string | undefined;
  logger: Logger;
  /** DrainEndpointOptions.holds: this node's own held messages, shared with its reconcile. */
  holds?: DrainEndpointOptions['holds'];
  /** STORE_TIMEOUT_MS unless a test shortens it. */
  storeTimeoutMs?: number;
}

/** FNV-1a over the id: which worker owns it. */
export function ownerOf(id: string, workers: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return (h >>> 0) % workers;
}

export class PrimaryDrain {
  private nextId = 0;
  private readonly pending = new Map<number, { worker: number; ids: string[]; finish: (outcomes: StoreOutcome[] | undefined) => void }>();
  /**
   * Stores answered `unknown` (timed out, or their worker exited): the worker
   * may still make them durable, or have done so, so `have` cannot say "not
   * here" for their ids. Settled by the late drain-stored (recorded in `seen`
   * then), or once the worker restarted and is ready (onWorkerReady).
   */
  private readonly unsettled = new UnsettledStores();
  /** How many pending stores carry each id (isStoring, without a walk of every pending store). */
  private readonly pendingIds = new Map<string, number>();

  private constructor(
    readonly endpoint: DrainEndpoint,
    private readonly seen: SeenIds,
    private readonly options: PrimaryDrainOptions,
  ) {}

  /**
   * Opens the dedupe store and readies the endpoint when the config has a
   * drain section (undefined otherwise); before the workers fork, so their
   * drain-held reports find it. Throws (the start fails) on a missing secret.
   */
  static async open(options: PrimaryDrainOptions): Promise<PrimaryDrain | undefined> {
    const drain = options.config.drain;
    if (!drain) return undefined;
    const secrets = loadDrainSecrets(drain);
    const tls = await loadTls(drain.tls ?? options.config.http.tls, options.persistentPath, options.config.hostname);
    const seen = await SeenIds.open(seenIdsPath(options.persistentPath), drain.dedupeRetentionMs, { fsync: options.config.spool.fsync });
    let self: PrimaryDrain | undefined;
    const endpoint = new DrainEndpoint({
      config: drain,
      nodeId: options.nodeId,
      secrets,
      tls,
      seen,
      store: (records) => self!.store(records),
      unsettled: (id) => self!.isUnsettled(id),
      holds: options.holds,
      unavailable: options.unavailable,
      logger: options.logger,
    });
    self = new PrimaryDrain(endpoint, seen, options);
    return self;
  }

  async listen(): Promise<void> {
    const port = await this.endpoint.listen();
    this.options.logger.info({ address: this.options.config.drain?.listen.address, port, remembered: this.seen.size }, 'drain endpoint listening');
  }

  /**
   * A starting worker's queued drained messages (drain-held), before it
   * delivers anything: a crash between a batch's spool write and its seen-ids
   * write leaves messages queued but unrecorded, and once delivered they would
   * be taken again from a source that never got its answer. Recorded now,
   * they stay `duplicate` for dedupe_retention.
   */
  async onHeld(ids: readonly string[]): Promise<void> {
    const missing = ids.filter((id) => !this.seen.has(id));
    if (missing.length === 0) return;
    try {
      await this.seen.add(missing);
    } catch (err) {
      // The worker is acked and reports ready all the same (a broken disk must not keep the node
      // down), which settles its unanswered stores: without these ids in memory `have` would say
      // "not here" for messages in this spool, and their source would deliver its copy too.
      this.seen.remember(missing);
      this.options.logger.error({ err, ids: missing.length }, 'drain: recording held ids failed; kept in memory until the next start');
      return;
    }
    this.options.logger.warn({ ids: missing.length }, 'drain: queued drained messages missing from the dedupe store (a crash mid-batch) recorded now');
  }

  /**
   * A (re)started worker is ready: it sent its drain-held first (onHeld), so
   * what its earlier life left unanswered is settled now: recorded if it is
   * in its spool, never stored if not.
   */
  onWorkerReady(worker: number): void {
    this.unsettled.forgetWorker(worker);
  }

  /** Whether `id` is in a store that answered `unknown` and has not settled since (see `unsettled`). */
  isUnsettled(id: string): boolean {
    return this.unsettled.has(id);
  }

  /**
   * Whether a store for `id` is with a worker now or answered `unknown` and
   * unsettled: its answer may still come and record `id` seen (onStored), so
   * the reconcile must not remove this node's held copy of it yet (DrainHoldsOptions.storing).
   */
  isStoring(id: string): boolean {
    return this.unsettled.has(id) || this.pendingIds.has(id);
  }

  /**
   * The reconcile removed these held copies (their destination has them):
   * this node stops saying it has them (reconcile.ts says why). Resolves once durable.
   */
  forget(ids: readonly string[]): Promise<void> {
    return this.seen.forget(ids);
  }

  apply(config: VolleyConfig): void {
    if (config.drain) this.endpoint.apply(config.drain);
  }

  /**
   * A worker's answer to a drain-store. One that comes after its store was
   * answered `unknown` (STORE_TIMEOUT_MS) is still recorded: the source was
   * told to ask again, and a message held here must be `duplicate` (and in
   * `have`) like any other, or the source would release its own copy beside
   * this one, or a rerun store it again once this one is delivered.
   */
  onStored(id: number, outcomes: StoreOutcome[]): void {
    const late = this.unsettled.get(id);
    if (!late) return this.pending.get(id)?.finish(outcomes);
    const held = late.ids.filter((_, i) => outcomes[i]?.status === 'queued' || outcomes[i]?.status === 'duplicate');
    // An id still `unknown` (an earlier copy awaits the HA mirror) stays unsettled until the worker restarts.
    const unsure = late.ids.filter((_, i) => outcomes[i]?.status === 'unknown');
    // Settled once recorded: `have` says "cannot say" until then, never "not here".
    const settle = (): void => {
      if (unsure.length > 0) this.unsettled.set(id, late.worker, unsure);
      else this.unsettled.delete(id);
    };
    this.seen.add(held).then(settle, (err: unknown) => {
      // As the endpoint does: in memory until the next start, whose drain-held records them.
      this.seen.remember(held);
      settle();
      this.options.logger.error({ err, ids: held.length }, 'drain: recording late-stored ids failed; kept in memory until the next start');
    });
    this.options.logger.warn({ worker: late.worker, queued: held.length }, 'drain: a worker stored its share of a batch after it was answered unknown; recorded now');
  }

  /** A worker that exits answers nothing: its share is "unknown" (the source sends it here again; what it did store answers `duplicate` from the spool). */
  onWorkerExit(worker: number): void {
    for (const [id, p] of [...this.pending]) {
      if (p.worker !== worker) continue;
      this.unsettled.set(id, worker, p.ids);
      p.finish(undefined);
    }
  }

  private async store(records: DrainRecord[]): Promise<StoreOutcome[]> {
    const n = this.options.workerCount;
    const groups = new Map<number, number[]>();
    records.forEach((r, i) => {
      const w = ownerOf(r.header.id, n);
      const list = groups.get(w) ?? [];
      list.push(i);
      groups.set(w, list);
    });
    const outcomes: StoreOutcome[] = new Array(records.length);
    await Promise.all(
      [...groups].map(async ([w, indexes]) => {
        const got = await this.ask(w, indexes.map((i) => records[i]));
        // Never handed over: certainly not stored. Handed over and no answer (the worker exited or
        // timed out): it may have made them durable just before, so the source must not go elsewhere.
        const missing: StoreOutcome =
          got === 'not-sent' ? { status: 'unavailable', reason: `worker ${w} is not running` } : { status: 'unknown', reason: `worker ${w} did not answer` };
        indexes.forEach((i, j) => (outcomes[i] = (got !== 'not-sent' && got?.[j]) || missing));
      }),
    );
    return outcomes;
  }

  /** The worker's outcomes; undefined when it was sent the records and never answered; 'not-sent' when it could not be asked. */
  private ask(index: number, records: DrainRecord[]): Promise<StoreOutcome[] | undefined | 'not-sent'> {
    const worker = this.options.workers.get(index);
    if (!worker || !worker.isConnected()) return Promise.resolve('not-sent');
    const id = ++this.nextId;
    return new Promise((resolve) => {
      const ids = records.map((r) => r.header.id);
      const timer = setTimeout(() => {
        // It may still store them: its answer, if it comes, is recorded (onStored).
        this.unsettled.set(id, index, ids);
        finish(undefined);
      }, this.options.storeTimeoutMs ?? STORE_TIMEOUT_MS);
      const finish = (outcomes: StoreOutcome[] | undefined): void => {
        clearTimeout(timer);
        if (this.pending.delete(id)) this.countPending(ids, -1);
        resolve(outcomes);
      };
      this.pending.set(id, { worker: index, ids, finish });
      this.countPending(ids, 1);
      worker.send({ type: 'drain-store', id, records } satisfies ToWorker);
    });
  }

  private countPending(ids: readonly string[], by: 1 | -1): void {
    for (const m of ids) {
      const n = (this.pendingIds.get(m) ?? 0) + by;
      if (n > 0) this.pendingIds.set(m, n);
      else this.pendingIds.delete(m);
    }
  }

  async close(): Promise<void> {
    await this.endpoint.close();
    await this.seen.close();
  }
}
