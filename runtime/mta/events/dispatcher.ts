// One batch sink's dispatcher, in the MTA primary: reads the event log from
// the sink's cursor, keeps the events its filter takes, cuts batches of at
// most batchSize and hands up to `concurrency` of them to the sink at once.
// What is ready is sent at once (a batch is not held to fill up), and the
// cursor moves past a batch only when it and every batch before it are
// acknowledged; batches acknowledged out of order ahead of it are saved with
// the cursor by their event ids and passed over after a restart. The durable
// copy (a tmp file, two fsyncs and a rename) is written after each
// acknowledgement, one write at a time with the latest position winning, so
// a crash repeats only what was in flight (the kill -9 acceptance,
// test/runtime/mta/events/webhook-e2e.test.ts). `saveEveryMs` can coalesce
// the writes into one per window (measured: ~10 us of MTA CPU a message at
// the bench's load), at the price of repeating that window's acknowledged
// batches after a crash; it is off by default. Each sink
// has its own dispatcher and reader: a slow or dead sink holds up no other
// sink, and no mail (the writers never wait on a reader).
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { FilterConfig } from '../../shared/config/events';
import { matchesFilter } from './filter';
import { compareFiles, copyCursor, LogReader, type Cursor, type UnreadSpan } from './log-reader';
import type { EventSink, VolleyEvent } from './types';

/**
 * Batches acknowledged ahead of the cursor (a batch before them still in
 * flight), saved with it: a restart passes these events over instead of
 * sending them again. `until` is the furthest position they came from: once
 * the cursor is past it, none of them can be read again.
 */
export interface AckedAhead {
  ids: string[];
  until: Cursor;
}

/** What the bound skipped for a sink: one line of `<events>/skipped.jsonl`. */
export interface SkipRecord {
  time: string;
  sink: string;
  /** Lines of the log skipped (before the sink's filter: counting them costs no parse). */
  events: number;
  bytes: number;
  first_time?: string;
  last_time?: string;
  files: { file: string; from: number; to: number }[];
}

export interface DispatcherOptions {
  sink: EventSink;
  /** The event-log directory. */
  dir: string;
  filter?: FilterConfig;
  /** Where reading starts (the sink's durable cursor). */
  position: Cursor;
  /** Makes a committed position durable (the cursor store), with what was acknowledged ahead of it; a replay has none. */
  commit?: (c: Cursor, acked?: AckedAhead) => Promise<void>;
  /** What the last run had acknowledged ahead of its cursor (saved by commit): not sent again. */
  acked?: AckedAhead;
  /** Unread bytes past which the oldest closed files are skipped (events.max_queue); none for a replay. */
  maxQueue?: number;
  /** Records a skip durably (skipped.jsonl); called before the reader moves past. */
  onSkip?: (r: SkipRecord) => Promise<void>;
  logger: Logger;
  now?: () => number;
  /** How often an idle dispatcher looks for new lines (default 50 ms: the lag budget is 1 s at p99). */
  pollMs?: number;
  /** The cursor's durable copy is written at most this often, and at close (default 0: after every acknowledgement). */
  saveEveryMs?: number;
  /** How often the bound is checked (default 1 s). */
  boundEveryMs?: number;
  /** A replay: only events at or after this time (ms)... */
  from?: number;
  /** ...and no further than this position. */
  until?: Cursor;
}

export interface DispatcherStatus {
  sink: string;
  /** Events read and not yet acknowledged, plus the unread bytes' worth at the average line size seen. */
  waitingEvents: number;
  waitingBytes: number;
  inFlightBatches: number;
  /** Age of the oldest event not yet acknowledged (seconds); 0 when nothing waits. */
  oldestAgeSeconds: number;
  skippedEvents: number;
  lastSkip?: SkipRecord;
  corruptLines: number;
}

interface Pending {
  done: boolean;
  /** A batch's event ids: saved while it is acknowledged ahead of the cursor. */
  ids?: string[];
  /** Events the last run had acknowledged, passed over among this entry's lines: forgotten once the cursor passes it. */
  passed?: string[];
  /** The reader's position after this batch (or after a run of lines the filter left out). */
  position: Cursor;
  events: number;
  firstTime?: string;
}

export class Dispatcher {
  private readonly reader: LogReader;
  private readonly now: () => number;
  private readonly pollMs: number;
  private committed: Cursor;
  /** Batches in log order, acknowledged or not; the done head moves the cursor. */
  private readonly order: Pending[] = [];
  private inFlight = 0;
  private lines: string[] = [];
  private events: VolleyEvent[] = [];
  private firstAt = 0;
  private closed = false;
  private wakeUp?: () => void;
  private loop?: Promise<void>;
  private saving?: Promise<void>;
  private dirty = false;
  /** The position last written by `commit`: retention deletes only behind it. */
  private saved: Cursor;
  private saveTimer?: NodeJS.Timeout;
  private lastSaveAt = -Infinity;
  private lastBound = -Infinity;
  private readBytes = 0;
  private readLines = 0;
  private skipped = 0;
  private lastSkip?: SkipRecord;
  private corrupt = 0;
  /** The last run's acknowledged-ahead ids not yet passed by the cursor, and how far they reach. */
  private readonly carried: Set<string>;
  private carriedUntil: Cursor;
  /** Carried ids read since the last entry was cut: they belong to the next one. */
  private passing: string[] = [];
  private finish?: () => void;
  /** A replay: resolves when every event up to `until` is acknowledged. */
  readonly finished: Promise<void>;

  constructor(private readonly options: DispatcherOptions) {
    this.now = options.now ?? Date.now;
    this.pollMs = options.pollMs ?? 50;
    this.committed = copyCursor(options.position);
    this.carried = new Set(options.acked?.ids ?? []);
    this.carriedUntil = copyCursor(options.acked?.until ?? {});
    this.saved = copyCursor(options.position);
    this.reader = new LogReader(options.dir, options.position, options.until);
    this.finished = new Promise((resolve) => (this.finish = resolve));
  }

  get name(): string {
    return this.options.sink.name;
  }

  /** The position every batch before it is acknowledged at. */
  position(): Cursor {
    return copyCursor(this.committed);
  }

  /**
   * What retention may delete behind: the cursor as last saved, which a
   * restart starts from (it lags position() by up to saveEveryMs). A replay,
   * which saves nothing, is at its position.
   */
  durablePosition(): Cursor {
    return copyCursor(this.options.commit ? this.saved : this.committed);
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops reading and sending; what is in flight is read again after a restart. Waits for the cursor's last write. */
  async close(): Promise<void> {
    this.closed = true;
    this.wakeUp?.();
    await this.loop;
    // The last position is saved now, not at the end of the window.
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    await this.saving;
    if (this.dirty) this.flush();
    await this.saving;
    await this.reader.close();
  }

  async status(): Promise<DispatcherStatus> {
    const spans = this.reader.unread();
    const bytes = spans.reduce((n, s) => n + s.to - s.from, 0);
    const avg = this.readLines > 0 ? this.readBytes / this.readLines : 500;
    const inFlight = this.order.reduce((n, p) => n + (p.done ? 0 : p.events), 0) + this.events.length;
    const oldest = this.order.find((p) => !p.done && p.firstTime)?.firstTime ?? this.events[0]?.time ?? (await firstTime(this.options.dir, spans));
    return {
      sink: this.name,
      waitingEvents: inFlight + Math.round(bytes / avg),
      waitingBytes: bytes,
      inFlightBatches: this.inFlight,
      oldestAgeSeconds: oldest ? Math.max(0, (this.now() - Date.parse(oldest)) / 1000) : 0,
      skippedEvents: this.skipped,
      lastSkip: this.lastSkip,
      corruptLines: this.corrupt,
    };
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      try {
        if (await this.step()) continue;
      } catch (err) {
        this.options.logger.error({ err, sink: this.name }, 'events: the dispatcher could not read the event log; trying again');
      }
      await this.sleep(this.pollMs);
    }
  }

  /** One round; true when there is more to read at once. */
  private async step(): Promise<boolean> {
    const { sink } = this.options;
    if (this.options.maxQueue !== undefined && this.elapsed(this.lastBound) >= (this.options.boundEveryMs ?? 1000)) {
      this.lastBound = this.now();
      await this.bound(this.options.maxQueue);
    }
    if (this.inFlight >= sink.concurrency) return false;
    // Read-ahead past a batch still in flight is bounded: what is acknowledged
    // ahead of the cursor is saved with it, id by id, and must stay small.
    if (this.order.some((p) => !p.done) && this.ackedAheadEvents() >= sink.batchSize * sink.concurrency * AHEAD_BATCHES) return false;
    const { lines, more } = await this.reader.read(sink.batchSize - this.lines.length);
    for (const line of lines) {
      this.readBytes += line.length + 1;
      this.readLines++;
      let event: VolleyEvent;
      try {
        event = JSON.parse(line) as VolleyEvent;
        // JSON but no event (`null`, a number): reading its fields would throw
        // out of this loop and drop the lines after it, read but never sent.
        if (typeof event !== 'object' || event === null || Array.isArray(event)) throw new Error('not a JSON object');
      } catch (err) {
        // Never written by the log (it writes whole lines): a damaged disk or a hand edit. Said, counted, passed.
        this.corrupt++;
        this.options.logger.error({ err, sink: this.name, line: line.slice(0, 200) }, 'events: a line of the event log is not JSON; it is passed over');
        continue;
      }
      if (!matchesFilter(this.options.filter, event)) continue;
      if (this.carried.has(event.event_id)) {
        // Acknowledged before the last restart, ahead of the cursor it saved: not sent again.
        this.passing.push(event.event_id);
        continue;
      }
      if (this.options.from !== undefined && !(Date.parse(event.time) >= this.options.from)) continue;
      if (this.lines.length === 0) this.firstAt = this.now();
      this.lines.push(line);
      this.events.push(event);
    }
    const waited = this.elapsed(this.firstAt) >= sink.maxWaitMs;
    const ready = this.lines.length >= sink.batchSize || (this.lines.length > 0 && (waited || (!more && !sink.fillBatches)));
    if (ready) this.send();
    else if (this.lines.length === 0) this.progress();
    if (!more && this.options.until && this.lines.length === 0 && this.inFlight === 0 && this.order.every((p) => p.done)) this.finish?.();
    return more;
  }

  /** The reader moved over lines the filter left out: the cursor may follow once the batches before are done. */
  private progress(): void {
    const pos = this.reader.position();
    const last = this.order.at(-1)?.position ?? this.committed;
    if (samePosition(pos, last)) return;
    this.order.push({ done: true, position: pos, events: 0, passed: this.takePassing() });
    this.advance();
  }

  private send(): void {
    const batch = { events: this.events, lines: this.lines };
    this.lines = [];
    this.events = [];
    const entry: Pending = { done: false, position: this.reader.position(), events: batch.events.length, firstTime: batch.events[0]?.time, ids: batch.events.map((e) => e.event_id), passed: this.takePassing() };
    this.order.push(entry);
    this.inFlight++;
    this.deliver(entry, batch);
  }

  private deliver(entry: Pending, batch: { events: VolleyEvent[]; lines: string[] }): void {
    this.options.sink.deliver(batch).then(
      () => {
        entry.done = true;
        this.inFlight--;
        // Acknowledged ahead of one still in flight: saved too, so a restart does not send it again.
        this.advance(this.order[0] !== undefined && !this.order[0].done);
        this.wakeUp?.();
      },
      (err: unknown) => {
        if (this.closed) {
          this.inFlight--; // read again after the restart: the cursor never passed it
          return;
        }
        // A sink rejects only when closed; anything else is a bug in it. The
        // batch is not dropped: it is offered again.
        this.options.logger.error({ err, sink: this.name, events: entry.events }, 'events: the sink failed a batch without closing; offering it again in 1 s');
        setTimeout(() => (this.closed ? this.inFlight-- : this.deliver(entry, batch)), 1000).unref();
      },
    );
  }

  /** Moves the committed cursor over the acknowledged head of the order, and saves it (also when `force`: what is acknowledged ahead changed). */
  private advance(force = false): void {
    let moved = false;
    while (this.order[0]?.done) {
      const head = this.order.shift()!;
      this.committed = head.position;
      for (const id of head.passed ?? []) this.carried.delete(id);
      moved = true;
    }
    // Past where the last run's ids came from: none of them can be read again (a file removed under us, the bound).
    if (this.carried.size > 0 && covers(this.committed, this.carriedUntil)) this.carried.clear();
    if ((moved || force) && this.options.commit) this.save();
  }

  private takePassing(): string[] | undefined {
    if (this.passing.length === 0) return undefined;
    const p = this.passing;
    this.passing = [];
    return p;
  }

  private ackedAheadEvents(): number {
    return this.order.reduce((n, p) => n + (p.done ? p.events : 0), 0);
  }

  /** What is acknowledged ahead of the committed cursor: done batches behind one in flight, and the last run's not yet passed. */
  private ackedAhead(): AckedAhead | undefined {
    const ids = [...this.carried];
    let until = this.carried.size > 0 ? copyCursor(this.carriedUntil) : {};
    for (const p of this.order) {
      if (!p.done || !p.ids) continue;
      ids.push(...p.ids);
      until = furthest(until, p.position);
    }
    return ids.length > 0 ? { ids, until } : undefined;
  }

  /** Asks for a cursor write: at once if the last was saveEveryMs ago, else at the end of that window. */
  private save(): void {
    this.dirty = true;
    if (this.saving || this.saveTimer || this.closed) return; // close() writes the last one
    const wait = (this.options.saveEveryMs ?? 0) - this.elapsed(this.lastSaveAt);
    if (wait <= 0) return this.flush();
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      this.flush();
    }, wait);
    this.saveTimer.unref();
  }

  /** One cursor write at a time, of the latest position. */
  private flush(): void {
    if (this.saving || !this.dirty) return;
    const commit = this.options.commit!;
    this.dirty = false;
    this.lastSaveAt = this.now();
    const cursor = copyCursor(this.committed);
    const acked = this.ackedAhead();
    this.saving = (async () => {
      try {
        await commit(cursor, acked);
        this.saved = cursor;
      } catch (err) {
        // Not fatal: the cursor on disk is older, so a restart repeats more. Tried again with the next batch.
        this.options.logger.error({ err, sink: this.name }, 'events: could not save the sink cursor');
      }
      this.saving = undefined;
      // Batches acknowledged during the write: their turn comes at the end of the window.
      if (this.dirty && !this.closed) this.save();
    })();
  }

  /**
   * The bound (events.max_queue). A sink that leaves more than this unread
   * has its oldest closed files skipped, so the log's disk use stays bounded
   * and mail keeps flowing: the writers never wait on a sink. Nothing is
   * skipped silently: an error log with the range, a counter, a durable line
   * in skipped.jsonl (what a replay or the S3 archive can still serve) and
   * the /readyz detail.
   */
  private async bound(maxQueue: number): Promise<void> {
    const spans = this.reader.unread();
    let total = spans.reduce((n, s) => n + s.to - s.from, 0);
    if (total <= maxQueue) return;
    // Oldest first across producers by the start time in the names, but each
    // producer's files strictly in their own order (sequence): after a clock
    // stepped back a later file has an older stamp, and skipping it first
    // would move the reader past earlier files that no record names.
    const queues = new Map<string, UnreadSpan[]>();
    for (const s of spans.filter((x) => x.closed)) queues.set(s.producer, [...(queues.get(s.producer) ?? []), s]);
    for (const q of queues.values()) q.sort((a, b) => compareFiles(a.file, b.file));
    const stamp = (s: UnreadSpan): string => s.file.slice(s.producer.length);
    const skip: UnreadSpan[] = [];
    while (total > maxQueue) {
      let pick: UnreadSpan[] | undefined;
      for (const q of queues.values()) if (q.length > 0 && (!pick || stamp(q[0]) < stamp(pick[0]))) pick = q;
      if (!pick) break;
      const s = pick.shift()!;
      skip.push(s);
      total -= s.to - s.from;
    }
    if (skip.length === 0) return; // only files still being written are unread: nothing closed to skip
    const record = { time: new Date(this.now()).toISOString(), sink: this.name, ...(await describe(this.options.dir, skip)) };
    await this.options.onSkip?.(record);
    this.options.logger.error(record, `events: sink "${this.name}" is ${total + record.bytes} bytes behind, past events.max_queue (${maxQueue}): skipped ${record.events} events of its oldest files (${record.first_time} .. ${record.last_time}); recorded in skipped.jsonl; replay them from the archive if needed`);
    this.skipped += record.events;
    this.lastSkip = record;
    // Each producer's skipped files are its oldest unread ones: move past the last of them.
    const lastOf = new Map<string, string>();
    for (const s of skip) if (!lastOf.has(s.producer) || compareFiles(s.file, lastOf.get(s.producer)!) > 0) lastOf.set(s.producer, s.file);
    for (const [producer, file] of lastOf) await this.reader.skipPast(producer, file);
    if (this.lines.length === 0) this.progress();
  }

  /**
   * Milliseconds since `since` on the wall clock; a clock stepped back (NTP)
   * counts as the interval over. Waiting for the clock to come back would
   * hold every cursor write (a crash then resends all that was acknowledged
   * meanwhile) and a batch waiting to fill, for as long as the step.
   */
  private elapsed(since: number): number {
    const d = this.now() - since;
    return d < 0 ? Infinity : d;
  }

  private sleep(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
    });
  }
}

/** Batches' worth (of batch_size x concurrency) read and acknowledged past one still in flight before reading stops. */
const AHEAD_BATCHES = 4;

function comparePositions(a: { file: string; offset: number }, b: { file: string; offset: number }): number {
  return compareFiles(a.file, b.file) || a.offset - b.offset;
}

/** `a` is at or past `b` for every producer `b` names. */
function covers(a: Cursor, b: Cursor): boolean {
  return Object.entries(b).every(([p, pos]) => a[p] !== undefined && comparePositions(a[p], pos) >= 0);
}

/** Per producer, the further of the two positions. */
function furthest(a: Cursor, b: Cursor): Cursor {
  const out = copyCursor(a);
  for (const [p, pos] of Object.entries(b)) if (!out[p] || comparePositions(pos, out[p]) > 0) out[p] = { file: pos.file, offset: pos.offset };
  return out;
}

function samePosition(a: Cursor, b: Cursor): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => b[k] && a[k].file === b[k].file && a[k].offset === b[k].offset);
}

/** Counts the lines of the spans and finds their first and last times: one sequential read. */
async function describe(dir: string, spans: UnreadSpan[]): Promise<Omit<SkipRecord, 'time' | 'sink'>> {
  let events = 0;
  let bytes = 0;
  let first: string | undefined;
  let last: string | undefined;
  const chunk = Buffer.allocUnsafe(1 << 20);
  for (const s of spans) {
    bytes += s.to - s.from;
    const fh = await open(join(dir, s.file), 'r').catch(() => undefined);
    if (!fh) continue;
    try {
      let tail = Buffer.alloc(0);
      for (let at = s.from; at < s.to; ) {
        const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, s.to - at), at);
        if (bytesRead === 0) break;
        const data = Buffer.concat([tail, chunk.subarray(0, bytesRead)]);
        let start = 0;
        for (let nl = data.indexOf(0x0a); nl >= 0; nl = data.indexOf(0x0a, start)) {
          events++;
          const t = timeOf(data.toString('utf8', start, nl));
          if (t && (!first || t < first)) first = t;
          if (t && (!last || t > last)) last = t;
          start = nl + 1;
        }
        tail = Buffer.from(data.subarray(start));
        at += bytesRead;
      }
    } finally {
      await fh.close();
    }
  }
  return { events, bytes, first_time: first, last_time: last, files: spans.map((s) => ({ file: s.file, from: s.from, to: s.to })) };
}

/** The `time` of a line without parsing all of it (the writer puts it first or near it). */
function timeOf(line: string): string | undefined {
  const m = /"time":"([^"]+)"/.exec(line);
  return m?.[1];
}

/** The time of the first unread event of each producer, the oldest of them. */
async function firstTime(dir: string, spans: UnreadSpan[]): Promise<string | undefined> {
  let oldest: string | undefined;
  const seen = new Set<string>();
  for (const s of spans) {
    if (seen.has(s.producer)) continue;
    seen.add(s.producer);
    const fh = await open(join(dir, s.file), 'r').catch(() => undefined);
    if (!fh) continue;
    try {
      const buf = Buffer.alloc(Math.min(64 * 1024, s.to - s.from));
      const { bytesRead } = await fh.read(buf, 0, buf.length, s.from);
      const t = timeOf(buf.toString('utf8', 0, bytesRead));
      if (t && (!oldest || t < oldest)) oldest = t;
    } finally {
      await fh.close();
    }
  }
  return oldest;
}
