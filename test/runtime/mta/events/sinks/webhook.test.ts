// The webhook sink against a real HTTPS receiver on 127.0.0.1 (its own
// self-signed CA handed to the sink as ca_file): retries through every kind of
// failure with every signature verified by the receiver's own check, dead
// letters for refusals and max_age, gzip, TLS that refuses the wrong CA, secret
// rotation, and close(). Backoff runs on an injected sleep and clock, so no
// test waits for a real backoff.

import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { createWebhookSink, parseRetryAfter, type WebhookSinkOptions } from '../../../../../runtime/mta/events/sinks/webhook';
import type { DeliveryEvent, EventSink, SinkBatch } from '../../../../../runtime/mta/events/types';
import type { WebhookSinkConfig } from '../../../../../runtime/shared/config/events';
import { loadTls } from '../../../../../runtime/shared/tls-files';
import { captureLogger, waitUntil } from '../../../../helpers/proxy-fixtures';
import { tempDir } from '../../../../helpers/tmp';
import { startWebhookReceiver, type WebhookReceiver, type WebhookReceiverOptions } from '../../../../helpers/webhook-receiver';

const root = tempDir('volley-webhook-');
let seq = 0;

function events(n: number): DeliveryEvent[] {
  return Array.from({ length: n }, () => {
    const i = ++seq;
    return {
      event: 'delivery',
      event_id: `ev-${i}`,
      time: new Date(1_700_000_000_000 + i).toISOString(),
      status: 'delivered',
      message_id: `m${i}`,
      attempt: 1,
      sender: 'bounce@example.com',
      recipient: `r${i}@example.net`,
      domain: 'example.net',
      time_in_queue_ms: 5,
      size: 1200,
      metadata: { tenant: 'a' },
    };
  });
}

function batchOf(evs: DeliveryEvent[]): SinkBatch {
  return { events: evs, lines: evs.map((e) => JSON.stringify(e)) };
}

/** A fresh persistent path and receiver per test, so files and requests never mix. */
async function setup(opts: Omit<WebhookReceiverOptions, 'dir'> = {}) {
  const dir = join(root, `t${++seq}`);
  mkdirSync(dir, { recursive: true });
  const receiver = await startWebhookReceiver({ dir, ...opts });
  opened.push(receiver);
  const log = captureLogger();
  return { dir, receiver, log };
}

function sinkConfig(receiver: WebhookReceiver, over: Partial<WebhookSinkConfig> = {}): WebhookSinkConfig {
  return {
    type: 'webhook',
    name: 'hook',
    url: receiver.url,
    secretFiles: receiver.secretFiles,
    batchSize: 500,
    maxWaitMs: 100,
    concurrency: 2,
    gzip: false,
    timeoutMs: 10_000,
    caFile: receiver.caFile,
    headers: {},
    ...over,
  };
}

/** A sleep that returns at once and remembers what it was asked for. */
function recordingSleep(): { delays: number[]; sleep: NonNullable<WebhookSinkOptions['sleep']> } {
  const delays: number[] = [];
  return { delays, sleep: async (ms) => void delays.push(ms) };
}

const opened: WebhookReceiver[] = [];
const sinks: EventSink[] = [];
function track(s: EventSink): EventSink {
  sinks.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(sinks.splice(0).map((s) => s.close()));
  await Promise.all(opened.splice(0).map((r) => r.close()));
});

describe('webhook sink', () => {
  it('retries through a 500, a hang past the timeout, a reset and a 429 with Retry-After, then delivers: every signature verifies, id and event ids never change', async () => {
    const { dir, receiver, log } = await setup({ script: [{ status: 500 }, 'hang', 'reset', { status: 429, retryAfter: '7' }] });
    const { delays, sleep } = recordingSleep();
    const sink = track(createWebhookSink(sinkConfig(receiver, { timeoutMs: 300 }), { persistentPath: dir, nodeId: 'n1', logger: log.logger }, { sleep, random: () => 0.5 }));
    const evs = events(3);
    await sink.deliver(batchOf(evs));

    expect(receiver.requests.map((r) => r.action)).toEqual([{ status: 500 }, 'hang', 'reset', { status: 429, retryAfter: '7' }, { status: 200 }]);
    for (const r of receiver.requests) {
      expect(r.verifyError).toBeUndefined();
      expect(r.verified).toEqual([true]);
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.events.map((e) => e.event_id)).toEqual(evs.map((e) => e.event_id));
      expect(r.events).toEqual(JSON.parse(JSON.stringify(evs)));
    }
    expect(new Set(receiver.requests.map((r) => r.id)).size).toBe(1);
    // Full jitter (random 0.5) doubling from 1 s, then the receiver's own Retry-After.
    expect(delays).toEqual([500, 1000, 2000, 7000]);
    expect(log.lines().filter((l) => l.msg === 'webhook batch not accepted; retrying').map((l) => String(l.err))).toEqual([
      expect.stringMatching(/^HTTP 500/),
      expect.stringMatching(/ETIMEDOUT/),
      expect.stringMatching(/ECONNRESET|closed/),
      expect.stringMatching(/^HTTP 429/),
    ]);
    expect(sink.stats()).toEqual({ delivered: 1, deliveredEvents: 3, retries: 4, deadLettered: 0, lastSuccess: expect.any(String), lastError: expect.stringMatching(/^HTTP 429/) });
    expect(existsSync(join(dir, 'events', 'dead-letter'))).toBe(false);
  });

  it('gets every event of concurrent batches through a receiver failing a third of the time', async () => {
    const { dir, receiver, log } = await setup();
    let n = 0;
    const flaky = [{ status: 503 }, 'reset', { status: 200 }] as const;
    receiver.setOtherwise({ status: 200 });
    const { sleep } = recordingSleep();
    const sink = track(createWebhookSink(sinkConfig(receiver, { concurrency: 4 }), { persistentPath: dir, nodeId: 'n1', logger: log.logger }, { sleep }));
    const batches = Array.from({ length: 12 }, () => batchOf(events(25)));
    for (let i = 0; i < 24; i++) receiver.script(flaky[n++ % 3]);
    await Promise.all(batches.map((b) => sink.deliver(b)));

    const counts = receiver.acceptedCounts();
    for (const b of batches) for (const e of b.events) expect(counts.get(e.event_id)).toBeGreaterThanOrEqual(1);
    expect(receiver.requests.every((r) => r.verified[0])).toBe(true);
    // A batch keeps its id however often it is sent, and no two batches share one.
    const idsByBatch = new Map<string, Set<string>>();
    for (const r of receiver.requests) {
      const key = r.events.map((e) => e.event_id).join(',');
      idsByBatch.set(key, (idsByBatch.get(key) ?? new Set()).add(r.id));
    }
    expect(idsByBatch.size).toBe(12);
    for (const ids of idsByBatch.values()) expect(ids.size).toBe(1);
    expect(new Set(receiver.requests.map((r) => r.id)).size).toBe(12);
    expect(sink.stats()).toMatchObject({ delivered: 12, deliveredEvents: 300, deadLettered: 0 });
  });

  it('dead-letters a batch the receiver refuses with a 400 at once, durably and with a log line', async () => {
    const { dir, receiver, log } = await setup({ script: [{ status: 400, body: 'unknown field' }, { status: 422 }] });
    const { delays, sleep } = recordingSleep();
    const sink = track(createWebhookSink(sinkConfig(receiver), { persistentPath: dir, nodeId: 'n1', logger: log.logger }, { sleep }));
    const a = batchOf(events(2));
    const b = batchOf(events(3));
    await sink.deliver(a);
    await sink.deliver(b);

    expect(receiver.requests).toHaveLength(2);
    expect(delays).toEqual([]);
    const file = join(dir, 'events', 'dead-letter', 'hook.jsonl');
    expect(readFileSync(file, 'utf8')).toBe([...a.lines, ...b.lines].map((l) => `${l}\n`).join(''));
    const dead = log.lines().filter((l) => l.reason === 'rejected');
    expect(dead).toHaveLength(2);
    expect(dead[0]).toMatchObject({ level: 50, sink: 'hook', events: 2, first_event_id: a.events[0].event_id, last_event_id: a.events[1].event_id, file, err: 'HTTP 400: unknown field' });
    expect(sink.stats()).toMatchObject({ delivered: 0, deadLettered: 2, retries: 0, lastError: 'HTTP 422: not accepted' });
  });

  it('dead-letters a batch still failing max_age after its first try, without waiting past it', async () => {
    const { dir, receiver, log } = await setup({ otherwise: { status: 503 } });
    const start = 1_800_000_000_000;
    const clock = { t: start };
    const sink = track(
      createWebhookSink(
        sinkConfig(receiver, { maxAgeMs: 60_000 }),
        { persistentPath: dir, nodeId: 'n1', logger: log.logger, now: () => clock.t },
        { sleep: async (ms) => void (clock.t += ms), random: () => 0.999 },
      ),
    );
    const batch = batchOf(events(4));
    await sink.deliver(batch);

    // 999 + 1998 + 3996 + 7992 + 15984 ms of backoff; the next (63936 ms) would end past max_age.
    expect(clock.t - start).toBe(30_969);
    expect(receiver.requests).toHaveLength(6);
    expect(receiver.requests.map((r) => r.timestamp)).toEqual([0, 999, 2997, 6993, 14985, 30969].map((d) => Math.floor((start + d) / 1000)));
    expect(readFileSync(join(dir, 'events', 'dead-letter', 'hook.jsonl'), 'utf8')).toBe(batch.lines.map((l) => `${l}\n`).join(''));
    expect(log.lines().filter((l) => l.reason === 'max_age')).toEqual([expect.objectContaining({ level: 50, events: 4, err: 'HTTP 503: not accepted' })]);
    expect(sink.stats()).toMatchObject({ delivered: 0, retries: 5, deadLettered: 1 });
  });

  it('keeps trying to write a dead letter it cannot write yet, and writes it', async () => {
    const { dir, receiver, log } = await setup({ script: [{ status: 404 }] });
    // A file where the dead-letter directory belongs: mkdir fails until it is gone.
    mkdirSync(join(dir, 'events'), { recursive: true });
    writeFileSync(join(dir, 'events', 'dead-letter'), 'in the way');
    let sleeps = 0;
    const sink = track(
      createWebhookSink(sinkConfig(receiver), { persistentPath: dir, nodeId: 'n1', logger: log.logger }, {
        sleep: async () => {
          if (++sleeps === 2) rmSync(join(dir, 'events', 'dead-letter'));
        },
      }),
    );
    const batch = batchOf(events(2));
    await sink.deliver(batch);
    expect(sleeps).toBe(2);
    expect(log.lines().filter((l) => l.msg === 'cannot write the webhook dead-letter file; retrying')).toHaveLength(2);
    expect(readFileSync(join(dir, 'events', 'dead-letter', 'hook.jsonl'), 'utf8')).toBe(batch.lines.map((l) => `${l}\n`).join(''));
    expect(sink.stats().deadLettered).toBe(1);
  });

  it('gzips the body when asked; the receiver decodes it and the signature covers the JSON', async () => {
    const { dir, receiver, log } = await setup();
    const sink = track(createWebhookSink(sinkConfig(receiver, { gzip: true, headers: { Authorization: 'Bearer t0k3n' } }), { persistentPath: dir, nodeId: 'n1', logger: log.logger }));
    const batch = batchOf(events(50));
    await sink.deliver(batch);
    const [r] = receiver.requests;
    expect(r.gzip).toBe(true);
    expect(r.headers['content-encoding']).toBe('gzip');
    expect(Number(r.headers['content-length'])).toBeLessThan(r.body.length);
    expect(r.body).toBe(`[${batch.lines.join(',')}]`);
    expect(r.verified).toEqual([true]);
    expect(r.headers.authorization).toBe('Bearer t0k3n');
  });

  it('keys its connection pool without the CA bundle, and still verifies the receiver by its ca_file', async () => {
    // The agent rebuilds its pool key for every request; with the CAs handed
    // as `ca` that key held every system CA (~200 KB a request, the primary's
    // biggest cost after SQLite in the events bench).
    const { dir, receiver, log } = await setup();
    const getName = jest.spyOn(https.Agent.prototype, 'getName');
    try {
      const sink = track(createWebhookSink(sinkConfig(receiver, { concurrency: 1 }), { persistentPath: dir, nodeId: 'n1', logger: log.logger }));
      for (let i = 0; i < 3; i++) await sink.deliver(batchOf(events(2)));
      const names = getName.mock.results.map((r) => String(r.value));
      expect(names.length).toBeGreaterThanOrEqual(3);
      expect(Math.max(...names.map((n) => n.length))).toBeLessThan(1024);
    } finally {
      getName.mockRestore();
    }
    expect(receiver.requests.map((r) => r.verified)).toEqual([[true], [true], [true]]);
  });

  it('signs with every secret while one rotates: two signatures, each verifying with its own secret', async () => {
    const { dir, receiver, log } = await setup({ secrets: 2 });
    const sink = track(createWebhookSink(sinkConfig(receiver), { persistentPath: dir, nodeId: 'n1', logger: log.logger }));
    await sink.deliver(batchOf(events(2)));
    const [r] = receiver.requests;
    const sigs = r.signature.split(' ');
    expect(sigs).toHaveLength(2);
    expect(sigs.every((s) => s.startsWith('v1,'))).toBe(true);
    expect(r.verified).toEqual([true, true]);
    // Each signature alone: verified by its own secret, not by the other one.
    receiver.secrets.forEach((secret, i) => {
      const base = { 'webhook-id': r.id, 'webhook-timestamp': String(r.timestamp) };
      const own = { ...base, 'webhook-signature': sigs[i] };
      const other = { ...base, 'webhook-signature': sigs[1 - i] };
      expect(() => new Webhook(secret).verify(r.body, own)).not.toThrow();
      expect(() => new Webhook(secret).verify(r.body, other)).toThrow(/No matching signature/);
    });
  });

  it('refuses a receiver whose certificate the CA bundle does not vouch for: retries, and never sends a byte in clear', async () => {
    const { dir, receiver, log } = await setup();
    const otherCa = join(dir, 'other');
    await loadTls(undefined, otherCa, 'localhost');
    // Every byte the sink sends passes through here on its way to the receiver.
    const wire: Buffer[] = [];
    const tap = net.createServer((client) => {
      const upstream = net.connect(receiver.port, '127.0.0.1');
      client.on('data', (c: Buffer) => wire.push(c));
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((r) => tap.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(tap.address() as net.AddressInfo).port}/events`;
    try {
      let sleeps = 0;
      const parked = new Promise<void>(() => undefined);
      // Three quick retries, then the fourth backoff lasts until close().
      const sleep = (): Promise<void> => (++sleeps <= 3 ? Promise.resolve() : parked);
      const wrongCa = track(createWebhookSink(sinkConfig(receiver, { url, caFile: join(otherCa, 'tls', 'self-signed.crt') }), { persistentPath: dir, nodeId: 'n1', logger: log.logger }, { sleep }));
      const systemCa = track(createWebhookSink(sinkConfig(receiver, { url, caFile: undefined, name: 'hook2' }), { persistentPath: dir, nodeId: 'n1', logger: log.logger }, { sleep: () => parked }));
      const batch = batchOf(events(2));
      const a = wrongCa.deliver(batch);
      const b = systemCa.deliver(batch);
      await waitUntil(() => wrongCa.stats().retries === 4 && systemCa.stats().retries === 1, 10_000, () => JSON.stringify([wrongCa.stats(), systemCa.stats()]));
      expect(wrongCa.stats().lastError).toMatch(/self[- ]signed certificate/);
      expect(systemCa.stats().lastError).toMatch(/self[- ]signed certificate/);
      await wrongCa.close();
      await systemCa.close();
      await expect(a).rejects.toMatchObject({ code: 'ESINKCLOSED' });
      await expect(b).rejects.toMatchObject({ code: 'ESINKCLOSED' });

      expect(receiver.requests).toHaveLength(0);
      await waitUntil(() => receiver.tlsErrors() >= 5, 5_000, () => `tls errors ${receiver.tlsErrors()}`);
      const sent = Buffer.concat(wire);
      expect(sent[0]).toBe(0x16); // a TLS handshake record, not "POST"
      expect(sent.includes(batch.events[0].event_id)).toBe(false);
      expect(sent.includes('POST')).toBe(false);
      expect(sink0Files(dir)).toBe(false);
    } finally {
      await new Promise<void>((r) => tap.close(() => r()));
    }
  });

  it('close() rejects a batch in flight and one waiting to retry, and refuses new ones', async () => {
    const { dir, receiver, log } = await setup({ script: ['hang', { status: 500 }] });
    const sink = track(createWebhookSink(sinkConfig(receiver, { timeoutMs: 600_000 }), { persistentPath: dir, nodeId: 'n1', logger: log.logger }, { sleep: () => new Promise(() => undefined) }));
    const inFlight = sink.deliver(batchOf(events(1)));
    await waitUntil(() => receiver.requests.length === 1);
    const backingOff = sink.deliver(batchOf(events(1)));
    await waitUntil(() => sink.stats().retries === 1);
    await sink.close();
    await expect(inFlight).rejects.toMatchObject({ code: 'ESINKCLOSED' });
    await expect(backingOff).rejects.toMatchObject({ code: 'ESINKCLOSED' });
    await expect(sink.deliver(batchOf(events(1)))).rejects.toMatchObject({ code: 'ESINKCLOSED' });
    expect(sink.stats()).toMatchObject({ delivered: 0, deadLettered: 0 });
    expect(sink0Files(dir)).toBe(false);
  });

  it('waits with its own timer when no sleep is injected, and close() ends that wait', async () => {
    const { dir, receiver, log } = await setup({ script: [{ status: 502 }] });
    // random 0.001: the first backoff is 1 ms of real time.
    const fast = track(createWebhookSink(sinkConfig(receiver), { persistentPath: dir, nodeId: 'n1', logger: log.logger }, { random: () => 0.001 }));
    await fast.deliver(batchOf(events(1)));
    expect(fast.stats()).toMatchObject({ delivered: 1, retries: 1 });
    // A Retry-After of an hour: only close() can end this wait.
    receiver.script({ status: 503, retryAfter: '3600' });
    const slow = track(createWebhookSink(sinkConfig(receiver, { name: 'slow' }), { persistentPath: dir, nodeId: 'n1', logger: log.logger }));
    const waiting = slow.deliver(batchOf(events(1)));
    await waitUntil(() => slow.stats().retries === 1);
    expect(log.lines().find((l) => l.sink === 'slow' && l.delay_ms !== undefined)).toMatchObject({ delay_ms: 3_600_000 });
    await slow.close();
    await expect(waiting).rejects.toMatchObject({ code: 'ESINKCLOSED' });
  });

  it('refuses bad config at creation with a code: secrets, CA file, reserved headers', async () => {
    const { dir, receiver, log } = await setup();
    const deps = { persistentPath: dir, nodeId: 'n1', logger: log.logger };
    const bad = join(dir, 'bad-secret');
    writeFileSync(bad, 'not-a-secret\n');
    expect(() => createWebhookSink(sinkConfig(receiver, { secretFiles: [bad] }), deps)).toThrow(expect.objectContaining({ code: 'EWEBHOOKSECRET', message: expect.stringContaining(bad) }));
    expect(() => createWebhookSink(sinkConfig(receiver, { secretFiles: [join(dir, 'none')] }), deps)).toThrow(expect.objectContaining({ code: 'EWEBHOOKSECRET' }));
    expect(() => createWebhookSink(sinkConfig(receiver, { caFile: join(dir, 'no-ca.pem') }), deps)).toThrow(expect.objectContaining({ code: 'EWEBHOOKCA' }));
    expect(() => createWebhookSink(sinkConfig(receiver, { caFile: bad }), deps)).toThrow(expect.objectContaining({ code: 'EWEBHOOKCA' }));
    expect(() => createWebhookSink(sinkConfig(receiver, { headers: { 'Webhook-Signature': 'v1,forged' } }), deps)).toThrow(expect.objectContaining({ code: 'EWEBHOOKCONFIG' }));
    expect(() => createWebhookSink(sinkConfig(receiver, { url: 'ftp://127.0.0.1/' }), deps)).toThrow(expect.objectContaining({ code: 'EWEBHOOKCONFIG' }));
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-12-05T04:00:00Z');
  it('reads delay-seconds and HTTP dates, and ignores what it cannot read', () => {
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('Sat, 05 Dec 2026 04:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Sat, 05 Dec 2026 03:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    // A day is a receiver's mistake: capped at an hour.
    expect(parseRetryAfter('86400', now)).toBe(3_600_000);
  });
});

/** Whether anything was dead-lettered under `dir` (a close or a TLS failure must not). */
function sink0Files(dir: string): boolean {
  return existsSync(join(dir, 'events', 'dead-letter'));
}
