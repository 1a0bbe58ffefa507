// The destination side of a drain (issue 17): the HTTPS endpoint on
// drain.listen that takes batches of queued messages from a draining node.
// It runs in the primary, which holds the node-wide dedupe store (SeenIds);
// each message is stored by the worker that owns its id (store callback).
// Order per request: address allowed -> body within limit -> signature ->
// not from itself -> framing -> dedupe -> durable in the spool -> ids recorded
// -> per-message answer. Nothing is read into the spool before the signature.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { CidrList } from '../../shared/cidr';
import type { DrainConfig } from '../../shared/config/drain';
import { errorCode } from '../../shared/errors';
import { listen } from '../../shared/listen';
import type { TlsMaterial } from '../../shared/tls-files';
import {
  DRAIN_IDLE_CLOSE_MS,
  DRAIN_HTTP_STATUS,
  DRAIN_PATH_HAVE,
  DRAIN_PATH_MESSAGES,
  decodeBatch,
  isBadRecord,
  unsignedReason,
  verifyRequest,
  type DrainRecord,
  type DrainResult,
  type HaveResponse,
} from './protocol';
import type { SeenIds } from './seen-ids';
import type { DrainHolds } from './source/holds';
import { readBody, sendJson } from '../../shared/http-body';

/**
 * What storing one record came to: durable now, already held, never
 * acceptable, certainly not stored now (spool full: the source may go
 * elsewhere), or `unknown`: it may be durable here (its worker died or did
 * not answer in time after it was handed the record), so the source must
 * send it here again and nowhere else.
 */
export type StoreOutcome =
  | { status: 'queued' }
  | { status: 'duplicate' }
  | { status: 'refused'; reason: string }
  | { status: 'unavailable'; reason: string }
  | { status: 'unknown'; reason: string };

export interface DrainEndpointOptions {
  config: DrainConfig;
  nodeId: string;
  /** The current secret first, then the previous one during a rotation. */
  secrets: readonly Buffer[];
  tls: TlsMaterial;
  seen: SeenIds;
  /** Makes records durable in the spool (one group commit per worker per batch); one outcome per record, in order. */
  store: (records: DrainRecord[]) => Promise<StoreOutcome[]>;
  /** Whether `id` is in a store answered `unknown` whose worker may still make it durable (PrimaryDrain): `have` cannot say "not here" for it yet. */
  unsettled?: (id: string) => boolean;
  /**
   * This node's own held messages (an interrupted drain of its own, settled by
   * the reconcile): `have` answers "yes", and a batch `duplicate` (or
   * `queued`), for one of them only once this node committed to keep it,
   * under the reconcile's lock (DrainHolds.answer, takeHeld). Without it (an
   * earlier release) both answer from `seen` and the spool alone.
   */
  holds?: Pick<DrainHolds, 'answer' | 'isHeld' | 'takeHeld'>;
  /** Why this node takes no drain now (stopping, draining itself, workers not ready); undefined when it does. */
  unavailable: () => string | undefined;
  logger: Logger;
  now?: () => number;
  /** A connection with no byte either way this long is closed (default DRAIN_IDLE_CLOSE_MS, longer than any source's --request-timeout; tests shorten it). */
  idleTimeoutMs?: number;
}

class DrainHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class DrainEndpoint {
  private readonly server: Server;
  private config: DrainConfig;
  private acceptFrom: CidrList;
  private trustedProxies: CidrList;
  /** Ids being stored by a request in progress: a concurrent request with the same id waits for it (it resolves with the ids whose fate is unknown). */
  private readonly inflight = new Map<string, Promise<ReadonlySet<string>>>();

  constructor(private readonly options: DrainEndpointOptions) {
    this.config = options.config;
    this.acceptFrom = new CidrList(options.config.acceptFrom);
    this.trustedProxies = new CidrList(options.config.trustedProxies);
    this.server = createServer({ key: options.tls.key, cert: options.tls.cert }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (err instanceof DrainHttpError) {
          if (err.status >= 500 || err.status === 401 || err.status === 403) options.logger.warn({ status: err.status, code: err.code, peer: req.socket.remoteAddress }, `drain: ${err.message}`);
          return send(res, err.status, { error: { code: err.code, message: err.message } });
        }
        options.logger.error({ err }, 'drain: request failed');
        send(res, 500, { error: { code: 'internal', message: 'internal error' } });
      });
    });
    this.server.keepAliveTimeout = 65_000;
    // A batch of max_batch_bytes over a slow link must not hit Node's 5-minute request timeout mid-body.
    this.server.requestTimeout = 0;
    // ...so silence is what ends a connection: with no request deadline, nothing else did.
    this.server.timeout = options.idleTimeoutMs ?? DRAIN_IDLE_CLOSE_MS;
  }

  /** A refresh may change who is allowed; the listen address and TLS files take a restart. */
  apply(config: DrainConfig): void {
    this.config = config;
    this.acceptFrom = new CidrList(config.acceptFrom);
    this.trustedProxies = new CidrList(config.trustedProxies);
  }

  async listen(bind?: { address: string; port: number }): Promise<number> {
    const b = bind ?? this.config.listen;
    return listen(this.server, b.port, b.address);
  }

  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  /**
   * The source's address: the peer's, unless the peer is a trusted proxy
   * that names the original in X-Forwarded-For (its last entry: the one the
   * proxy itself added) or Client-IP. Headers from anyone else are ignored.
   */
  private clientOf(req: IncomingMessage): string | undefined {
    const peer = req.socket.remoteAddress;
    if (!this.trustedProxies.has(peer)) return peer;
    const xff = req.headers['x-forwarded-for'];
    const forwarded = (Array.isArray(xff) ? xff.join(',') : xff)?.split(',').map((s) => s.trim()).filter(Boolean).pop();
    const clientIp = req.headers['client-ip'];
    const named = forwarded ?? (Array.isArray(clientIp) ? clientIp[0] : clientIp)?.trim();
    return named && isIP(named.replace(/^::ffff:/, '')) ? named : peer;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== DRAIN_PATH_MESSAGES && path !== DRAIN_PATH_HAVE) throw new DrainHttpError(404, 'not_found', `no endpoint ${path}`);
    if (req.method !== 'POST') throw new DrainHttpError(405, 'method_not_allowed', 'use POST');
    const client = this.clientOf(req);
    if (!this.acceptFrom.has(client)) {
      req.resume();
      throw new DrainHttpError(DRAIN_HTTP_STATUS.forbidden, 'not_allowed', `${client ?? 'unknown address'} is not in drain.accept_from`);
    }
    const now = this.options.now?.() ?? Date.now();
    // Headers that cannot carry a valid signature are refused before the body is read: held in memory
    // up to max_batch_bytes, it would cost this node (the primary) for a request it refuses anyway.
    const unsigned = unsignedReason(req.headers, now);
    if (unsigned) req.resume();
    const body = unsigned ? Buffer.alloc(0) : await readBatch(req, this.config.maxBatchBytes);
    const verified = verifyRequest(req.headers, body, this.options.secrets, now);
    if (!verified.ok) {
      const why = verified.reason === 'stale' ? 'the request time is more than 5 minutes from this node\'s clock (replayed, or a clock is wrong)' : verified.reason === 'missing' ? 'the request is not signed' : 'the signature does not match: the drain secrets differ';
      throw new DrainHttpError(DRAIN_HTTP_STATUS.unauthorized, verified.reason, why);
    }
    if (verified.node === this.options.nodeId) throw new DrainHttpError(DRAIN_HTTP_STATUS.self, 'self', `this is node ${this.options.nodeId} itself: a node cannot drain into itself`);
    const down = this.options.unavailable();
    if (down) throw new DrainHttpError(DRAIN_HTTP_STATUS.unavailable, 'unavailable', down);
    if (path === DRAIN_PATH_HAVE) return send(res, 200, await this.have(body));
    let records;
    try {
      records = decodeBatch(body);
    } catch (err) {
      throw new DrainHttpError(DRAIN_HTTP_STATUS.malformed, errorCode(err) ?? 'malformed', (err as Error).message);
    }
    if (records.length === 0) throw new DrainHttpError(DRAIN_HTTP_STATUS.malformed, 'empty_batch', 'the batch holds no message');
    const { results, unknown } = await this.take(records, now);
    // Some record may be durable here without this node knowing: no per-message
    // status says "ask me again", and `refused` or a 503 would let the source
    // send it elsewhere too. A 500 keeps the whole batch for this destination;
    // sent again, what was stored is answered `duplicate`.
    if (unknown) throw new DrainHttpError(DRAIN_HTTP_STATUS.unknown, 'store_unknown', `cannot say whether every message was stored (${unknown}); send this batch here again`);
    // Nothing queued and something could not be stored now: the whole request
    // may go elsewhere (nothing of it is held here). With some queued, the
    // answer must name those, so the rest come back `refused` with the reason.
    if (!results.some((r) => r.status === 'queued' || r.status === 'duplicate') && results.some((r) => r.status === 'refused' && r.reason?.startsWith('unavailable:'))) {
      throw new DrainHttpError(DRAIN_HTTP_STATUS.unavailable, 'unavailable', results.find((r) => r.reason?.startsWith('unavailable:'))!.reason!);
    }
    const queued = results.filter((r) => r.status === 'queued').length;
    this.options.logger.info({ source: verified.node, client, messages: results.length, queued, duplicates: results.filter((r) => r.status === 'duplicate').length }, 'drain: batch received');
    send(res, 200, { results });
  }

  private async have(body: Buffer): Promise<HaveResponse> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new DrainHttpError(DRAIN_HTTP_STATUS.malformed, 'bad_json', 'the body is not JSON');
    }
    const ids = (parsed as { ids?: unknown } | null)?.ids;
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) throw new DrainHttpError(DRAIN_HTTP_STATUS.malformed, 'bad_ids', 'the body must be { "ids": [string...] }');
    const seen = (id: string): boolean => this.options.seen.has(id);
    // "Yes" makes the source remove its copy: for an id this node holds itself, only once it keeps it.
    const decided = this.options.holds ? await this.options.holds.answer(ids as string[], seen) : { have: (ids as string[]).filter(seen), unknown: [] };
    // "Not here" lets the source deliver its own copy: never said for an id that may yet be stored
    // here (a request storing it now, or a store answered `unknown`). The source asks again.
    const unsure = [...decided.unknown, ...(ids as string[]).filter((id) => !seen(id) && (this.inflight.has(id) || this.options.unsettled?.(id) === true))];
    const have = decided.have;
    // A partial answer keeps one unsettled store from hiding every other id the source asks about.
    if ((parsed as { partial?: unknown }).partial === true) return unsure.length > 0 ? { have, unknown: unsure } : { have };
    if (unsure.length > 0) throw new DrainHttpError(DRAIN_HTTP_STATUS.unknown, 'store_unknown', `cannot say yet whether ${unsure.length} of these messages are stored here (a store still in progress or unanswered); ask again`);
    return { have };
  }

  /** Dedupe, store what is new, record it as seen, and answer each record in order. */
  private async take(records: ReturnType<typeof decodeBatch>, now: number): Promise<{ results: DrainResult[]; unknown?: string }> {
    const holds = this.options.holds;
    // Nothing becomes held after the start: a batch with no id held now needs no lock.
    if (!holds || !records.some((r) => !isBadRecord(r) && holds.isHeld(r.header.id))) return this.takeNow(records, now);
    // `duplicate` (or `queued`) makes the sender remove its copy, as have's "yes" does: for a copy held
    // here, the reconcile could remove it on its destination's word (that destination may be this very
    // sender: no copy left). So the batch is looked up and stored under the reconcile's lock, and what it
    // answers for a held id is kept here first; one whose keep cannot be journaled makes it a 500 (sent again).
    const { result, cannot } = await holds.takeHeld(
      () => this.takeNow(records, now),
      (r) => r.results.filter((x) => x.status === 'queued' || x.status === 'duplicate').map((x) => x.id),
    );
    if (cannot.length > 0) result.unknown ??= `${cannot.length} message(s) held here for this node's own interrupted drain could not be kept (the journal write failed) or may be gone (a removal here failed part-way)`;
    return result;
  }

  private async takeNow(records: ReturnType<typeof decodeBatch>, now: number): Promise<{ results: DrainResult[]; unknown?: string }> {
    const results: DrainResult[] = new Array(records.length);
    let unknown: string | undefined;
    const unknownIds = new Set<string>();
    const fresh: { index: number; record: DrainRecord }[] = [];
    const inBatch = new Set<string>();
    const repeats: number[] = [];
    const waits: Promise<void>[] = [];
    for (const [index, r] of records.entries()) {
      if (isBadRecord(r)) {
        results[index] = { id: r.id, status: 'refused', reason: r.error };
        continue;
      }
      const id = r.header.id;
      const other = this.inflight.get(id);
      if (this.options.seen.has(id)) results[index] = { id, status: 'duplicate' };
      // A second copy in this batch shares the first's fate (set below): `duplicate` before the
      // first is stored would let the source drop a message that may not be stored here.
      else if (inBatch.has(id)) repeats.push(index);
      else if (other) {
        // Another request is storing it right now: its outcome decides ours.
        waits.push(
          other.then((unsure) => {
            if (!this.options.seen.has(id) && unsure.has(id)) unknown ??= 'being stored by another request that could not say';
            results[index] = this.options.seen.has(id) ? { id, status: 'duplicate' } : { id, status: 'refused', reason: 'unavailable: being stored by another request that failed; send it again' };
          }),
        );
      } else {
        inBatch.add(id);
        fresh.push({ index, record: r });
      }
    }
    let done!: (unsure: ReadonlySet<string>) => void;
    const settled = new Promise<ReadonlySet<string>>((resolve) => (done = resolve));
    for (const f of fresh) this.inflight.set(f.record.header.id, settled);
    try {
      const outcomes = fresh.length > 0 ? await this.options.store(fresh.map((f) => f.record)) : [];
      const queuedIds: string[] = [];
      fresh.forEach((f, i) => {
        const o: StoreOutcome = outcomes[i] ?? { status: 'unknown', reason: 'no answer from the worker' };
        const id = f.record.header.id;
        if (o.status === 'queued') queuedIds.push(id);
        if (o.status === 'unknown') {
          unknownIds.add(id);
          unknown ??= o.reason;
        }
        results[f.index] = o.status === 'queued' || o.status === 'duplicate' ? { id, status: o.status } : { id, status: 'refused', reason: o.status === 'unavailable' ? `unavailable: ${o.reason}` : o.reason };
      });
      // `queued` promises the id is recorded: a later attempt answers `duplicate`.
      try {
        await this.options.seen.add(queuedIds, now);
      } catch (err) {
        // The messages are durable in the spool, so the answer stays `queued`:
        // a 503 would send them to another destination too. Remembered in
        // memory meanwhile; after a restart the workers' drain-held reports
        // record them before any is delivered.
        this.options.seen.remember(queuedIds, now);
        this.options.logger.error({ err, ids: queuedIds.length }, 'drain: recording seen ids failed; kept in memory until the next start');
      }
    } finally {
      for (const f of fresh) if (this.inflight.get(f.record.header.id) === settled) this.inflight.delete(f.record.header.id);
      done(unknownIds);
    }
    await Promise.all(waits);
    for (const index of repeats) {
      const id = (records[index] as DrainRecord).header.id;
      const first = results[fresh.find((f) => f.record.header.id === id)!.index];
      results[index] = first.status === 'queued' ? { id, status: 'duplicate' } : { ...first };
    }
    return { results, unknown };
  }
}

function readBatch(req: IncomingMessage, limit: number): Promise<Buffer> {
  return readBody(req, limit, () => new DrainHttpError(DRAIN_HTTP_STATUS.tooLarge, 'too_large', `the batch exceeds drain.max_batch_bytes (${limit} bytes): send smaller batches`));
}

const send = sendJson;
