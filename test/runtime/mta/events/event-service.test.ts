import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import pino from 'pino';
import { AdminServer } from '../../../../runtime/mta/admin/admin-server';
import { EventLog, eventsDir, listEventFiles } from '../../../../runtime/mta/events/event-log';
import { EventService, type EventsStatus } from '../../../../runtime/mta/events/event-service';
import type { BuiltSinks, RegistryDeps } from '../../../../runtime/mta/events/sinks';
import type { NewEvent, ShipSource } from '../../../../runtime/mta/events/types';
import { parseConfig } from '../../../../runtime/shared/config/load';
import type { SinkConfig, VolleyConfig } from '../../../../runtime/shared/config/types';
import { ADMIN_AUTH, ADMIN_TOKEN, testConfigYaml } from '../../../helpers/config';
import { MemorySink } from '../../../helpers/event-sink';
import { sinkCaughtUp } from '../../../helpers/events-e2e';
import { VOLLEY } from '../../../helpers/mta-process';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { tempDir } from '../../../helpers/tmp';

const root = tempDir();
const exec = promisify(execFile);
const event = (n: number): NewEvent => ({
  time: new Date(1_700_000_000_000 + n * 1000).toISOString(), event: 'delivery', status: 'delivered', message_id: `m${n}`, attempt: 1,
  sender: 's@x.example', recipient: `r${n}@y.example`, domain: 'y.example', time_in_queue_ms: 5, size: 100,
});

/** A log that keeps what it is told, for the bound's error line. */
function capturingLogger(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

interface Setup {
  service: EventService;
  sinks: Map<string, MemorySink>;
  eventsSource?: ShipSource;
  writer: EventLog;
  dir: string;
}

/** An EventService over in-memory sinks: `sinks` names the batch sinks, `s3` adds an s3 sink that ships `events`. */
function setup(name: string, sinks: MemorySink[], options: { s3?: boolean; maxQueue?: number; logger?: pino.Logger; maxSize?: number; shipNow?: () => Promise<void> } = {}): Setup {
  const persistentPath = join(root, name);
  const config: VolleyConfig = parseConfig(testConfigYaml());
  const configs: SinkConfig[] = sinks.map((s) => ({ type: 'sqlite', name: s.name, maxSize: 1 << 30, maxAgeMs: 3_600_000 }));
  if (options.s3) configs.push({ type: 's3', name: 'archive', bucket: 'b', prefix: '', gzip: true, keepLocal: false, ship: ['events'], intervalMs: 30_000 });
  config.events = { ...config.events, maxQueue: options.maxQueue ?? config.events.maxQueue, sinks: configs };
  const byName = new Map(sinks.map((s) => [s.name, s]));
  const out: Partial<Setup> = { sinks: byName, dir: eventsDir(persistentPath) };
  const createSinks = (_c: unknown, deps: RegistryDeps): BuiltSinks => {
    out.eventsSource = deps.eventsSource;
    return { batch: sinks.map((sink) => ({ sink, type: 'memory' })), shipper: options.s3 ? { start() {}, close: async () => {}, stats: () => ({ filesShipped: 3, bytesShipped: 4096, filesWaiting: 2, failures: 1, lastSuccess: '2026-12-05T04:00:00.000Z', lastError: 'S3 said no' }), shipNow: options.shipNow } : undefined };
  };
  out.service = new EventService({ config, persistentPath, nodeId: 'node-1', logger: options.logger ?? pino({ level: 'silent' }), createSinks, pollMs: 10, retentionMs: 3_600_000 });
  out.writer = new EventLog({ dir: eventsDir(persistentPath), name: 'w0', node: 'node-1', maxSize: options.maxSize ?? 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  return out as Setup;
}

/** A file sink's hand-over as the SQLite sink does it: closes its open file (one holding rows it has not closed yet) and says so. */
class FileSink extends MemorySink {
  /** How many events the sink held at each file it closed. */
  readonly closedWith: number[] = [];
  handOver(): boolean {
    const rows = this.events().length;
    if (rows === (this.closedWith.at(-1) ?? 0)) return false;
    this.closedWith.push(rows);
    return true;
  }
}

const files = (dir: string): string[] => [...listEventFiles(dir).values()].flat().map((f) => f.name);

test('a sink past events.max_queue has its oldest files skipped, loudly: error log, counter, skipped.jsonl, /readyz detail; the other sink and the writers go on', async () => {
  const { logger, lines } = capturingLogger();
  const slow = new MemorySink('slow', 'dead', 1, 1);
  const fast = new MemorySink('fast', 'ack', 100, 2);
  const { service, writer, dir } = setup('bound', [slow, fast], { maxQueue: 1500, logger, maxSize: 600 });
  service.start();
  for (let i = 0; i < 30; i++) await writer.write([event(i)]); // never waits on a sink
  await waitUntil(() => fast.events().length === 30);
  // The durable record is written before the error line: wait for both.
  await waitUntil(() => existsSync(join(dir, 'skipped.jsonl')) && lines.some((l) => l.level === 50 && String(l.msg).includes('max_queue')), 5000);
  const record = JSON.parse(readFileSync(join(dir, 'skipped.jsonl'), 'utf8').split('\n')[0]) as { sink: string; events: number; first_time: string; last_time: string; files: { file: string; from: number; to: number }[] };
  expect(record.sink).toBe('slow');
  // The record counts exactly the lines of the ranges it names.
  const inRanges = record.files.reduce((n, f) => n + readFileSync(join(dir, f.file)).subarray(f.from, f.to).toString().split('\n').filter(Boolean).length, 0);
  expect(record.events).toBe(inRanges);
  expect(record.events).toBeGreaterThan(0);
  expect(record.first_time <= record.last_time).toBe(true);
  const error = lines.find((l) => l.level === 50 && String(l.msg).includes('max_queue'));
  expect(error).toMatchObject({ sink: 'slow', events: record.events });
  const status = await service.status();
  const bySink = Object.fromEntries(status.sinks.map((s) => [s.sink, s]));
  expect(bySink.slow.skippedEvents).toBeGreaterThanOrEqual(record.events);
  expect(bySink.fast.skippedEvents).toBe(0);
  expect(bySink.slow.waitingBytes).toBeLessThanOrEqual(1500 + 600);
  const metrics = await service.registry.metrics();
  expect(metrics).toMatch(new RegExp(`volley_events_skipped_total\\{sink="slow"\\} ${bySink.slow.skippedEvents}\\b`));
  expect(metrics).toMatch(/volley_events_skipped_total\{sink="fast"\} 0\b/);
  expect((await service.readiness()).sinks.slow).toMatchObject({ skipped_events: bySink.slow.skippedEvents, last_skip: { sink: 'slow' } });
  await service.close();
  await writer.close();
});

test('retention: a closed file goes once every batch sink read past it and S3 holds it; the open file stays', async () => {
  const a = new MemorySink('a', 'ack', 100);
  const lagging = new MemorySink('lagging', 'hold', 100, 1);
  const s = setup('retention', [a, lagging], { s3: true, maxSize: 600 });
  s.service.start();
  for (let i = 0; i < 12; i++) await s.writer.write([event(i)]);
  await waitUntil(() => a.events().length === 12);
  const all = files(s.dir);
  expect(all.length).toBeGreaterThan(3);
  const closed = (await s.eventsSource!.closedFiles()).map((f) => f.slice(s.dir.length + 1));
  expect(closed).toEqual(all.slice(0, -1)); // every closed file offered to the shipper, oldest first
  // One sink has not acknowledged them: they stay.
  await s.service.sweep();
  expect(files(s.dir)).toEqual(all);
  while (lagging.acked.reduce((n, b) => n + b.events.length, 0) < 12) {
    await waitUntil(() => lagging.held.length > 0);
    lagging.release(0);
  }
  let caughtUp = false;
  await waitUntil(() => {
    void s.service.status().then((st) => (caughtUp = st.sinks.every((x) => x.waitingBytes === 0 && x.inFlightBatches === 0)));
    return caughtUp;
  });
  // Every sink has them, but S3 does not yet: they stay.
  await s.service.sweep();
  expect(files(s.dir)).toEqual(all);
  // S3 confirms each: now they go (the shipper's call deletes what nothing else needs).
  for (const f of await s.eventsSource!.closedFiles()) await s.eventsSource!.shipped(f, false);
  expect(await s.eventsSource!.closedFiles()).toEqual([]);
  await waitUntil(() => {
    void s.service.sweep();
    return files(s.dir).length === 1;
  });
  expect(files(s.dir)).toEqual([all.at(-1)]);
  await s.service.close();
  await s.writer.close();
});

test('retention: with no sink at all, closed files stay as the attempt log always kept them', async () => {
  const s = setup('no-sinks', [], { maxSize: 600 });
  s.service.start();
  for (let i = 0; i < 8; i++) await s.writer.write([event(i)]);
  const before = files(s.dir);
  expect(before.length).toBeGreaterThan(2);
  await s.service.sweep();
  expect(files(s.dir)).toEqual(before);
  await s.service.close();
  await s.writer.close();
});

test('the s3 shipper: its stats under its sink name in status, its own series in /metrics, and a line of `volley events status`', async () => {
  const s = setup('shipper-stats', [], { s3: true });
  const stats = { filesShipped: 3, bytesShipped: 4096, filesWaiting: 2, failures: 1, lastSuccess: '2026-12-05T04:00:00.000Z', lastError: 'S3 said no' };
  expect((await s.service.status()).shipper).toEqual({ sink: 'archive', ...stats });
  const metrics = await s.service.registry.metrics();
  expect(metrics).toMatch(/volley_events_s3_files_shipped_total\{sink="archive"\} 3\n/);
  expect(metrics).toMatch(/volley_events_s3_bytes_shipped_total\{sink="archive"\} 4096\n/);
  expect(metrics).toMatch(/volley_events_s3_files_waiting\{sink="archive"\} 2\n/);
  expect(metrics).toMatch(/volley_events_s3_failed_rounds\{sink="archive"\} 1\n/);
  expect(metrics).toMatch(new RegExp(`volley_events_s3_last_success_timestamp_seconds\\{sink="archive"\\} ${Date.parse(stats.lastSuccess) / 1000}\n`));
  const admin = new AdminServer(
    {
      ready: async () => ({ ok: true, reasons: [] }),
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      queue: async () => ({}),
      refresh: async () => ({ ok: true }),
      events: { status: () => s.service.status(), replay: (name, from) => s.service.replay(name, from) },
    },
    { tokens: () => [{ name: 'ops', sha256: '10a4c7c9fc5206d6f36dc6944a81bb6f4a3cb0e25014ae3b12e6c3e52712292a' }], logger: pino({ level: 'silent' }) },
  );
  const { port } = await admin.listen(0, '127.0.0.1');
  try {
    const cli = await exec(process.execPath, [VOLLEY, 'events', 'status', '--admin', `127.0.0.1:${port}`], { env: { ...process.env, VOLLEY_ADMIN_TOKEN: ADMIN_TOKEN } });
    expect(cli.stdout).toBe('archive (s3): 3 files shipped (4096 bytes), 2 waiting, 1 failed rounds in a row; last success 2026-12-05T04:00:00.000Z; last error: S3 said no\n');
  } finally {
    await admin.close();
    await s.service.close();
    await s.writer.close();
  }
});

test('a drain\'s hand-over: a file sink closes its file only once it holds every event, then a shipping round starts; after a resume it does not', async () => {
  const acct = new FileSink('acct', 'hold', 10, 1, 0);
  let rounds = 0;
  const s = setup('hand-over', [acct], { s3: true, shipNow: async () => void rounds++ });
  s.service.start();
  try {
    await s.writer.write([event(1), event(2), event(3)]);
    await waitUntil(() => acct.held.length > 0);
    await s.service.handOver();
    expect(rounds).toBe(1); // the event files' round
    // A batch still in flight: its rows are not in the file yet, which stays open.
    await s.service.status();
    expect(acct.closedWith).toEqual([]);
    acct.mode = 'ack';
    while (acct.held.length > 0) acct.release(0);
    // Polled as `volley drain` polls: the status that finds the sink caught up closes its file.
    await waitUntil(async () => (await s.service.status(), acct.closedWith.length > 0), 5000, () => `acked ${acct.events().length}`);
    expect({ closedWith: acct.closedWith, rounds }).toEqual({ closedWith: [3], rounds: 2 });
    await s.service.status();
    expect({ closedWith: acct.closedWith, rounds }).toEqual({ closedWith: [3], rounds: 2 }); // nothing new open: no round
    // The drain gave up and resumed the node: files rotate by size and age again, not at every status.
    s.service.endHandOver();
    await s.writer.write([event(4)]);
    await waitUntil(() => acct.events().length === 4);
    await s.service.status();
    expect({ closedWith: acct.closedWith, rounds }).toEqual({ closedWith: [3], rounds: 2 });
  } finally {
    await s.service.close();
    await s.writer.close();
  }
});

test('without an s3 sink: no shipper in status, no s3 series', async () => {
  const s = setup('no-shipper', [new MemorySink('a', 'ack', 10)]);
  expect((await s.service.status()).shipper).toBeUndefined();
  expect(await s.service.registry.metrics()).not.toMatch(/volley_events_s3_\w+\{/);
  await s.service.close();
  await s.writer.close();
});

test('status and replay through the admin API and the CLI: a replay resends a window without moving the sink cursor', async () => {
  const sink = new MemorySink('hook', 'ack', 3);
  const s = setup('admin', [sink]);
  s.service.start();
  for (let i = 0; i < 10; i++) await s.writer.write([event(i)]);
  await waitUntil(() => sink.events().length === 10);
  const cursorFile = join(s.dir, 'cursors', 'hook.json');
  // The cursor is saved after the acks, asynchronously: wait for it to stand at the end of the log, not just to exist.
  await waitUntil(() => sinkCaughtUp(s.dir, 'hook'));
  const cursorBefore = (JSON.parse(readFileSync(cursorFile, 'utf8')) as { producers: unknown }).producers;
  const admin = new AdminServer(
    {
      ready: async () => ({ ok: true, reasons: [], events: await s.service.readiness() }),
      metrics: async () => ({ contentType: 'text/plain', body: await s.service.registry.metrics() }),
      queue: async () => ({}),
      refresh: async () => ({ ok: true }),
      events: { status: () => s.service.status(), replay: (name, from) => s.service.replay(name, from) },
    },
    { tokens: () => [{ name: 'ops', sha256: '10a4c7c9fc5206d6f36dc6944a81bb6f4a3cb0e25014ae3b12e6c3e52712292a' }], logger: pino({ level: 'silent' }) },
  );
  const { port } = await admin.listen(0, '127.0.0.1');
  const base = `http://127.0.0.1:${port}`;
  try {
    expect((await fetch(`${base}/events/status`)).status).toBe(401);
    const status = (await (await fetch(`${base}/events/status`, { headers: ADMIN_AUTH })).json()) as EventsStatus;
    expect(status.sinks).toEqual([expect.objectContaining({ sink: 'hook', deliveredEvents: 10, waitingEvents: 0, skippedEvents: 0 })]);
    // The CLI, as an operator runs it.
    const env = { ...process.env, VOLLEY_ADMIN_TOKEN: ADMIN_TOKEN };
    const cli = await exec(process.execPath, [VOLLEY, 'events', 'status', '--json', '--admin', `127.0.0.1:${port}`], { env });
    expect((JSON.parse(cli.stdout) as EventsStatus).sinks[0]).toMatchObject({ sink: 'hook', deliveredEvents: 10 });
    const text = await exec(process.execPath, [VOLLEY, 'events', 'status', '--admin', `127.0.0.1:${port}`], { env });
    expect(text.stdout).toMatch(/^hook \(memory\): 0 waiting, oldest 0s; 10 delivered, 0 retries, 0 dead-lettered, 0 skipped/);

    const replay = (body: unknown): Promise<Response> => fetch(`${base}/events/replay`, { method: 'POST', headers: { ...ADMIN_AUTH, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await replay({ sink: 'nope', from: '1h' })).status).toBe(404);
    expect((await replay({ sink: 'hook', from: 'yesterday' })).status).toBe(400);
    expect((await replay({ sink: 'hook' })).status).toBe(400);
    const from = new Date(1_700_000_000_000 + 6 * 1000).toISOString();
    const out = await exec(process.execPath, [VOLLEY, 'events', 'replay', '--sink', 'hook', '--from', from, '--admin', `127.0.0.1:${port}`], { env });
    expect(JSON.parse(out.stdout)).toMatchObject({ sink: 'hook', from });
    await waitUntil(() => sink.events().length === 14);
    expect(sink.events().slice(10).map((e) => e.message_id)).toEqual(['m6', 'm7', 'm8', 'm9']);
    // Same events, same ids: a receiver deduplicates by event_id.
    expect(sink.events().slice(10).map((e) => e.event_id)).toEqual(sink.events().slice(6, 10).map((e) => e.event_id));
    expect((JSON.parse(readFileSync(cursorFile, 'utf8')) as { producers: unknown }).producers).toEqual(cursorBefore);
    // The main dispatcher goes on as before.
    await s.writer.write([event(10)]);
    await waitUntil(() => sink.events().length === 15);
    const ready = (await (await fetch(`${base}/readyz`)).json()) as { ok: boolean; events: { sinks: Record<string, unknown> } };
    expect(ready).toMatchObject({ ok: true, events: { sinks: { hook: { waiting: 0, skipped_events: 0 } } } });
  } finally {
    await admin.close();
    await s.service.close();
    await s.writer.close();
  }
});

test('the primary writes its own events (producer "primary"), stamped with an id and the node, and its sinks get them', async () => {
  const sink = new MemorySink('hook', 'ack', 10);
  const s = setup('primary-writer', [sink]);
  s.service.start();
  await s.service.writer.write([{ time: new Date().toISOString(), event: 'bounce', status: 'failed', message_id: 'b1', recipient: 'r@y.example', matched_by: 'verp' }]);
  await waitUntil(() => sink.events().length === 1);
  expect(sink.events()[0]).toMatchObject({ event: 'bounce', node: 'node-1', event_id: expect.any(String) });
  expect(readdirSync(s.dir).some((f) => f.startsWith('primary.'))).toBe(true);
  await s.service.close();
  await s.writer.close();
});
