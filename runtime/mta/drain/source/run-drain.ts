// `volley drain`, the whole sequence on the node being drained:
// 1. stop intake (SMTP 421 4.3.2, HTTP 503, /readyz 503) and delivery; the
//    attempts in flight finish and are recorded; the event processor runs on;
// 2. wait until every event is delivered (--max-event-wait: exit 10;
//    --no-wait-on-events skips it);
// 3. stop the MTA (nothing runs there any more) and take its persistent
//    path's lock, so no MTA can deliver a message while it is being moved;
// 4. send the queue round-robin to the destinations, removing locally only
//    what a destination acknowledged (distributor.ts, journal.ts).
// The MTA is left stopped at the end; it is stopped, not drained, only when
// the drain gave up before moving anything (exit 10, or a stop signal during
// the event wait): then intake and delivery are resumed as they were.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VolleyError } from '../../../shared/errors';
import { nodeIdentity } from '../../node-identity';
import type { DrainRecord } from '../protocol';
import type { SpoolEntry } from '../../spool/types';
import { DestinationClient, parseDestination, type DestinationAddress } from './destination-client';
import { Distributor, type Batch, type DistributionResult, type GiveUpOptions } from './distributor';
import { Journal, journalPath, readJournal, unsettled } from './journal';
import { LocalSpool } from './local-spool';
import { MtaControl, sleep } from './mta-control';
import { writeClientSettings } from './reconcile';
import { eventsLeftOnDisk } from './events-on-disk';
import type { SinkConfig } from '../../../shared/config/events';
import pino from 'pino';

/** The retention reader's logger: it has nothing to say to the drain's stderr. */
const silentLogger = pino({ level: 'silent' });

/** The seed's exit codes. There is no 40/41: see README (Drain) and `volley drain --help`. */
export const EXIT = { ok: 0, other: 1, eventWait: 10, unreadable: 11, undistributed: 12, terminated: 42 } as const;

/** A batch body stays well under a destination's drain.max_batch_bytes (default 32MB). */
const MAX_BATCH_BYTES = 8 * 1024 * 1024;

export interface DrainOptions {
  destinations: string[];
  persistentPath: string;
  /** delivery.max_lifetime of this node: a moved message's `expires`. */
  maxLifetimeMs: number;
  adminUrl: string;
  adminHeaders: Record<string, string>;
  secret: Buffer;
  /** Where the secret came from (recorded for reconcile.ts; never the secret itself). */
  secretFile?: string;
  bindIp?: string;
  ca?: Buffer;
  insecure?: boolean;
  waitOnEvents: boolean;
  /** events.sinks of the config: what a stopped MTA's event log is checked against (events-on-disk.ts). */
  eventSinks?: readonly SinkConfig[];
  maxEventWaitMs?: number;
  concurrency: number;
  batchSize: number;
  requestTimeoutMs: number;
  retryDelayMs: number;
  /** When a destination that cannot say whether it stored a batch is given up (default DEFAULT_GIVE_UP). */
  giveUp?: Partial<GiveUpOptions>;
  pollMs?: number;
  report: Reporter;
}

/** Where progress goes: stderr lines, and JSON lines on stdout with --json. */
export interface Reporter {
  phase(name: string, detail?: Record<string, unknown>): void;
  problem(detail: Record<string, unknown> & { message: string }): void;
  progress(p: { moved: Record<string, number>; total: number; remaining: number; ratePerSecond: number }): void;
  result(code: number, detail: Record<string, unknown>): void;
}

/** Set by SIGTERM/SIGINT: the drain stops cleanly (exit 42). */
export class StopSignal {
  stopped = false;
  private readonly listeners: (() => void)[] = [];
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const l of this.listeners) l();
  }
  on(l: () => void): void {
    this.listeners.push(l);
  }
}

/** The node id stored at a persistent path, without creating one (nodeIdentity would). */
function storedNodeId(persistentPath: string): string | undefined {
  try {
    return readFileSync(join(persistentPath, 'node-id'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export async function runDrain(o: DrainOptions, signal: StopSignal): Promise<number> {
  const addresses = o.destinations.map(parseDestination);
  const control = new MtaControl({ adminUrl: o.adminUrl, headers: o.adminHeaders, persistentPath: o.persistentPath, pollMs: o.pollMs });
  let unlock: () => void;
  const running = await control.running();
  // The spool the drain reads must be the stopped MTA's: a wrong --persistent-path
  // would "drain" an empty or foreign spool, exit 0, and leave the real queue behind.
  const here = storedNodeId(o.persistentPath);
  const expected = running ? await control.nodeId() : here;
  if (!here || here !== expected) {
    throw new VolleyError(
      'EDRAINPATH',
      `--persistent-path ${o.persistentPath} ${here ? `belongs to node "${here}"` : 'holds no MTA (no node-id file)'}${running ? `, but the MTA at ${o.adminUrl} is node "${expected}"` : ''}: give the drained MTA's own persistent path`,
    );
  }
  if (running) {
    const { queued } = await control.stopIntakeAndDelivery(() => signal.stopped);
    o.report.phase('intake and delivery stopped', { queued });
    const waited = await waitForEvents(o, control, signal);
    if (waited !== undefined) {
      // Nothing has moved: the node goes back to work, as if the drain had not run.
      await control.resume();
      o.report.phase('intake and delivery resumed (nothing was moved)');
      o.report.result(waited, {});
      return waited;
    }
    o.report.phase('stopping the MTA');
    unlock = await control.stopNode();
  } else {
    // A rerun after the MTA was stopped (exit 12, 42, or a SIGKILL after step 3): its events were waited
    // for then. An MTA stopped some other way (crashed, `systemctl stop`) may have left events that
    // nothing delivers once the node is retired: they are looked for on disk.
    unlock = await control.lock(false);
    if (o.waitOnEvents) {
      let left;
      try {
        left = await eventsLeftOnDisk(o.persistentPath, o.eventSinks ?? [], silentLogger);
      } catch (err) {
        unlock();
        throw err;
      }
      if (left.length > 0) {
        unlock();
        o.report.problem({
          message: 'the MTA is not running and its event log still holds events its sinks have not taken: start the MTA so it delivers them, then run `volley drain` again (or pass --no-wait-on-events); nothing was moved',
          sinks: left,
        });
        o.report.result(EXIT.eventWait, {});
        return EXIT.eventWait;
      }
    }
    o.report.phase('the MTA is not running: draining its spool directly');
  }
  try {
    return await distribute(o, addresses, signal);
  } finally {
    unlock();
  }
}

/** undefined once the events are out (or not waited for); otherwise the exit code to stop with. */
async function waitForEvents(o: DrainOptions, control: MtaControl, signal: StopSignal): Promise<number | undefined> {
  if (signal.stopped) return EXIT.terminated;
  if (!o.waitOnEvents) {
    o.report.phase('not waiting for events (--no-wait-on-events)');
    return undefined;
  }
  const start = Date.now();
  for (let said = 0; ; said++) {
    if (signal.stopped) return EXIT.terminated;
    const ev = await control.eventsWaiting();
    if (ev.none) o.report.phase('this MTA has no event queue (GET /events/status: 404): nothing to wait for');
    if (ev.waiting === 0) {
      o.report.phase('events delivered');
      return undefined;
    }
    if (o.maxEventWaitMs !== undefined && Date.now() - start >= o.maxEventWaitMs) {
      o.report.problem({ message: `events still waiting after --max-event-wait ${o.maxEventWaitMs} ms`, sinks: ev.sinks });
      return EXIT.eventWait;
    }
    if (said % 5 === 0) o.report.phase('waiting for events', { waiting: ev.waiting, sinks: ev.sinks });
    await sleep(o.pollMs ?? 1000);
  }
}

async function distribute(o: DrainOptions, addresses: DestinationAddress[], signal: StopSignal): Promise<number> {
  const node = nodeIdentity(o.persistentPath);
  const spool = await LocalSpool.open(o.persistentPath, o.maxLifetimeMs);
  const file = journalPath(o.persistentPath);
  const open = unsettled(readJournal(file));
  const journal = new Journal(file);
  // So an MTA started instead of a rerun can ask the same destinations the same way (reconcile.ts).
  writeClientSettings(o.persistentPath, { secretFile: o.secretFile, ca: o.ca?.toString(), insecure: o.insecure, bindIp: o.bindIp });
  const clientOptions = { secret: o.secret, node, ca: o.ca, insecure: o.insecure, localAddress: o.bindIp, timeoutMs: o.requestTimeoutMs, maxSockets: o.concurrency };
  const clients = addresses.map((a) => new DestinationClient(a, clientOptions));
  const unreadable: { id: string; error: string }[] = [];
  try {
    const total = spool.size;
    const entries = new Map(spool.entries().map((e) => [e.id, e]));
    // What a killed drain sent and never settled: removed already (say so), or back to that same destination only.
    const gone = [...open.keys()].filter((id) => !entries.has(id));
    if (gone.length) journal.append({ removed: gone, at: Date.now() });
    const held = new Map<string, Batch[]>();
    const heldOnly = new Set<string>();
    const byDest = new Map<string, SpoolEntry[]>();
    for (const [id, dest] of open) {
      const e = entries.get(id);
      if (!e) continue;
      entries.delete(id);
      byDest.set(dest, [...(byDest.get(dest) ?? []), e]);
    }
    for (const [dest, list] of byDest) {
      if (!clients.some((c) => c.address.label === dest)) {
        heldOnly.add(dest);
        clients.push(new DestinationClient(parseDestination(dest), clientOptions));
      }
      const batches: Batch[] = [];
      const reader = batchesOf(list, spool, o.batchSize, unreadable);
      for (let b = await reader(); b; b = await reader()) batches.push(b);
      held.set(dest, batches);
      o.report.phase('resending what an interrupted drain sent to a destination, to that destination only', { dest, messages: list.length });
    }
    o.report.phase('moving messages', { queued: total, destinations: clients.map((c) => c.address.label) });
    const distributor = new Distributor({
      clients,
      held,
      heldOnly,
      nextBatch: batchesOf([...entries.values()], spool, o.batchSize, unreadable),
      journal,
      remove: (ids) => spool.markDrained(ids),
      concurrency: o.concurrency,
      retryDelayMs: o.retryDelayMs,
      giveUp: o.giveUp,
      onProblem: (p) => o.report.problem({ message: `${p.dest}: ${p.reason}`, dest: p.dest, kind: p.kind }),
      onProgress: () => undefined,
    });
    signal.on(() => distributor.stop());
    if (signal.stopped) distributor.stop(); // the signal came while the MTA was stopping
    const started = Date.now();
    const tick = setInterval(() => o.report.progress(progressOf(distributor, total, started)), 1000);
    let result: DistributionResult;
    try {
      result = await distributor.run();
    } finally {
      clearInterval(tick);
    }
    const moved = Object.values(result.moved).reduce((a, b) => a + b, 0);
    o.report.progress({ moved: result.moved, total, remaining: spool.size, ratePerSecond: rate(moved, started) });
    const detail = {
      moved: result.moved,
      remaining: spool.size,
      unreadable,
      refused: result.refused,
      never: result.never,
      gaveUp: result.gaveUp,
      left: result.left.length,
    };
    for (const u of unreadable) o.report.problem({ message: `message ${u.id} cannot be read: ${u.error}; it stays queued here`, id: u.id });
    for (const [dest, g] of Object.entries(result.gaveUp)) {
      o.report.problem({
        message: `${dest} was given up after ${g.reason}: it may hold messages ${g.ids.join(', ')}; they stay queued here, journaled to ${dest} only (never sent elsewhere: that could deliver them twice). Once ${dest} answers again, run \`volley drain\` again (they go to ${dest} alone, which answers duplicate for what it has), or start the MTA (it asks ${dest} before delivering them)`,
        code: 'EDESTGIVENUP',
        dest,
        ids: g.ids,
      });
    }
    for (const r of result.refused) o.report.problem({ message: `${r.dest} refused message ${r.id}: ${r.reason}; it stays queued here`, id: r.id, dest: r.dest });
    // Everything settled: a new drain starts with a clean journal.
    if (unsettled(readJournal(file)).size === 0) journal.retire();
    let code: number = EXIT.ok;
    // A signal that came as the last batch was answered left nothing behind: that is a finished drain.
    if (result.stopped && spool.size > 0) code = EXIT.terminated;
    else if (result.left.length > 0 || result.refused.length > 0) code = EXIT.undistributed;
    else if (unreadable.length > 0) code = EXIT.unreadable;
    o.report.result(code, detail);
    return code;
  } finally {
    journal.close();
    for (const c of clients) c.close();
    await spool.close();
  }
}

/** A reader of `list` in batches of up to `size` messages (and MAX_BATCH_BYTES); unreadable messages are set aside. */
function batchesOf(list: SpoolEntry[], spool: LocalSpool, size: number, unreadable: { id: string; error: string }[]): () => Promise<Batch | undefined> {
  let at = 0;
  return async () => {
    const records: DrainRecord[] = [];
    let bytes = 0;
    while (at < list.length && records.length < size && bytes < MAX_BATCH_BYTES) {
      const entry = list[at++];
      if (!spool.has(entry.id)) continue;
      try {
        const r = await spool.record(entry);
        records.push(r);
        bytes += r.body.length;
      } catch (err) {
        unreadable.push({ id: entry.id, error: (err as Error).message });
      }
    }
    return records.length ? { ids: records.map((r) => r.header.id), records } : undefined;
  };
}

function rate(moved: number, started: number): number {
  const s = (Date.now() - started) / 1000;
  return s > 0 ? Math.round(moved / s) : 0;
}

function progressOf(d: Distributor, total: number, started: number): { moved: Record<string, number>; total: number; remaining: number; ratePerSecond: number } {
  const moved = d.progress();
  const sum = Object.values(moved).reduce((a, b) => a + b, 0);
  return { moved, total, remaining: total - sum, ratePerSecond: rate(sum, started) };
}
