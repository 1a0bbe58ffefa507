// Acceptance of the webhook sink end to end: a real `volley mta` (primary and
// workers) delivers mail to Postfix's smtp-sink, and its delivery events go to
// a real HTTPS receiver (test/helpers/webhook-receiver.ts, verifying every
// signature with the standardwebhooks reference) that fails in every way a
// receiver can; the MTA is killed -9 with batches in flight and restarted on
// the same persistent path; and a second sink that never answers is shown not
// to slow the first (measured, the same load with and without it).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_AUTH, deliveryConfigYaml } from '../../../helpers/config';
import { startMta, type MtaProcess } from '../../../helpers/mta-process';
import { runSmtpSource, startSmtpSink, type SmtpSinkHandle } from '../../../helpers/postfix-tools';
import { childrenByParent } from '../../../helpers/procs';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { readAttempts } from '../../../helpers/attempt-log';
import { tempDir } from '../../../helpers/tmp';
import { newWebhookSecret, startWebhookReceiver, type ReceivedRequest, type WebhookReceiver } from '../../../helpers/webhook-receiver';

jest.setTimeout(180_000);

const root = tempDir('volley-webhook-e2e-');
let sink: SmtpSinkHandle;
const receivers: WebhookReceiver[] = [];
const mtas: MtaProcess[] = [];
let seq = 0;

beforeAll(async () => {
  sink = await startSmtpSink();
});
afterAll(async () => {
  for (const m of mtas) await m.stop().catch(() => m.crash());
  for (const r of receivers) await r.close();
  await sink?.stop();
});

interface Hook {
  name: string;
  receiver: WebhookReceiver;
  /** The sink's per-request timeout. */
  timeout: string;
}

function sinkYaml(h: Hook): string {
  const r = h.receiver;
  return `    - { name: ${h.name}, type: webhook, url: "${r.url}", secret_files: [${r.secretFiles[0]}], ca_file: ${r.caFile}, batch_size: 25, max_wait: 200ms, concurrency: 4, timeout: ${h.timeout} }\n`;
}

/** A fresh directory with a config whose delivery events go to `hooks`. */
function setup(hooks: Hook[]): { dir: string; config: string; pp: string } {
  const dir = join(root, `run${++seq}`);
  mkdirSync(dir, { recursive: true });
  const config = join(dir, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: ${sink.port} }]
delivery: { retry: [1h] }
events:
  sinks:
${hooks.map(sinkYaml).join('')}`),
  );
  return { dir, config, pp: join(dir, 'pp') };
}

async function receiver(script: Parameters<typeof startWebhookReceiver>[0]['script'] = [], otherwise?: Parameters<typeof startWebhookReceiver>[0]['otherwise']): Promise<WebhookReceiver> {
  const dir = join(root, `recv${++seq}`);
  mkdirSync(dir, { recursive: true });
  const r = await startWebhookReceiver({ dir, script, otherwise });
  receivers.push(r);
  return r;
}

async function start(config: string, pp: string): Promise<MtaProcess> {
  const m = await startMta({ configPath: config, persistentPath: pp, workers: 2 });
  mtas.push(m);
  return m;
}

/** `n` messages over SMTP, each to a recipient of its own (smtp-source -N). */
async function send(m: MtaProcess, n: number): Promise<void> {
  const r = await runSmtpSource({ port: m.smtpPort, messages: n, sessions: 4, from: 'news@shop.example', to: 'rcpt@dest.example', uniqueRecipients: true });
  expect(r.exitCode).toBe(0);
}

/** The delivery events the MTA wrote, by event_id, from its event log. */
function loggedDeliveries(pp: string): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  for (const e of readAttempts(join(pp, 'log', 'events'))) if (e.event === 'delivery') out.set(String(e.event_id), e);
  return out;
}

const ok = (r: ReceivedRequest): boolean => typeof r.action === 'object' && r.action.status >= 200 && r.action.status < 300;
const idsOf = (r: ReceivedRequest): string[] => r.events.map((e) => String(e.event_id));

function missing(logged: Iterable<string>, got: Map<string, number>): string[] {
  return [...logged].filter((id) => !got.has(id));
}

test('a receiver that answers 500, hangs past the timeout, resets and answers 429 + Retry-After: every delivery event arrives, every signature verifies, event_ids are stable across retries', async () => {
  const r = await receiver([{ status: 500 }, 'hang', 'reset', { status: 429, retryAfter: '1' }, { status: 503 }, 'reset']);
  const { config, pp } = setup([{ name: 'hook', receiver: r, timeout: '2s' }]);
  const mta = await start(config, pp);
  const N = 300;
  await send(mta, N);

  // All N delivered (to smtp-sink), and every delivery event the log holds accepted by the receiver.
  await waitUntil(() => [...loggedDeliveries(pp).values()].filter((e) => e.status === 'delivered').length >= N, 60_000, () => `${loggedDeliveries(pp).size} logged`);
  await waitUntil(() => missing(loggedDeliveries(pp).keys(), r.acceptedCounts()).length === 0, 90_000, () => `missing ${missing(loggedDeliveries(pp).keys(), r.acceptedCounts()).length}; requests ${r.requests.length}\n${mta.log().slice(-1500)}`);
  const logged = loggedDeliveries(pp);
  const counts = r.acceptedCounts();
  // Nothing lost, nothing invented: what was accepted is exactly what was logged.
  expect(new Set(counts.keys())).toEqual(new Set(logged.keys()));
  expect(new Set([...logged.values()].map((e) => e.recipient)).size).toBe(N);

  // The failures happened, and each failed batch came back under the same webhook-id with the same events.
  const failed = r.requests.filter((q) => !ok(q));
  expect(failed.map((q) => q.action)).toEqual([{ status: 500 }, 'hang', 'reset', { status: 429, retryAfter: '1' }, { status: 503 }, 'reset']);
  for (const f of failed) {
    const again = r.accepted().filter((a) => a.id === f.id);
    expect(again).toHaveLength(1);
    expect(idsOf(again[0])).toEqual(idsOf(f));
    expect(again[0].body).toBe(f.body);
    expect(again[0].receivedAt).toBeGreaterThan(f.receivedAt);
  }
  // Every request, failed or not, carried a signature the reference implementation accepts.
  expect(r.requests.every((q) => q.verified.length === 1 && q.verified[0])).toBe(true);
  expect(r.requests.every((q) => q.parseError === undefined)).toBe(true);
  // The 429's Retry-After (1 s) was honoured: its retry came no sooner.
  const throttled = failed[3];
  expect(r.accepted().find((a) => a.id === throttled.id)!.receivedAt - throttled.receivedAt).toBeGreaterThanOrEqual(1000);
  await mta.stop();
});

test('a webhook secret rotated on disk (volley secret-files fetch) signs from the next SIGHUP refresh on, without a restart; an unreadable one is refused and the new key goes on signing', async () => {
  // The receiver verifies with the old and the new secret; the sink's one file holds the old one first.
  const rotated = newWebhookSecret();
  const dir = join(root, `recv${++seq}`);
  mkdirSync(dir, { recursive: true });
  const r = await startWebhookReceiver({ dir, secrets: [newWebhookSecret(), rotated] });
  receivers.push(r);
  const { config, pp } = setup([{ name: 'hook', receiver: r, timeout: '5s' }]);
  const file = r.secretFiles[0] as string;
  const mta = await start(config, pp);
  /** Which secrets verified the accepted requests from `from` on (distinct answers). */
  const verifiedSince = (from: number): string[] => [...new Set(r.accepted().slice(from).map((q) => q.verified.join(',')))];
  const eventsSince = (from: number): number => r.accepted().slice(from).reduce((n, q) => n + q.eventCount, 0);
  const refreshes = (text: RegExp): number => (mta.log().match(text) ?? []).length;

  await send(mta, 2);
  await waitUntil(() => eventsSince(0) >= 2, 30_000, () => mta.log().slice(-1500));
  expect(verifiedSince(0)).toEqual(['true,false']); // the old secret only
  const before = r.accepted().length;

  writeFileSync(file, `${rotated}\n`);
  mta.proc.kill('SIGHUP');
  await waitUntil(() => refreshes(/config refreshed/g) >= 1, 30_000, () => mta.log().slice(-1500));
  await send(mta, 2);
  await waitUntil(() => eventsSince(before) >= 2, 30_000, () => mta.log().slice(-1500));
  expect(verifiedSince(before)).toEqual(['false,true']); // the new one only

  // A secret file that cannot be used: the refresh is rejected naming the sink, and the new key goes on signing.
  writeFileSync(file, 'not a webhook secret\n');
  mta.proc.kill('SIGHUP');
  await waitUntil(() => refreshes(/config refresh rejected/g) >= 1, 30_000, () => mta.log().slice(-1500));
  expect(mta.log()).toMatch(/events\.sinks \\"hook\\"/);
  const after = r.accepted().length;
  await send(mta, 1);
  await waitUntil(() => eventsSince(after) >= 1, 30_000, () => mta.log().slice(-1500));
  expect(verifiedSince(after)).toEqual(['false,true']);
  await mta.stop();
});

test('kill -9 (primary and workers) with batches in flight, restart on the same path: every event arrives, and only unacknowledged batches are sent again', async () => {
  // The first batch hangs (the sink's 60 s timeout holds it in flight); later ones are acknowledged.
  const r = await receiver(['hang']);
  const { config, pp } = setup([{ name: 'hook', receiver: r, timeout: '60s' }]);
  let mta = await start(config, pp);
  await send(mta, 150);
  await waitUntil(() => r.accepted().length >= 3, 60_000, () => `${r.requests.length} requests`);
  // Then every batch hangs: several are in flight at the kill.
  r.setOtherwise('hang');
  await send(mta, 100);
  // Every batch slot (concurrency 4) hung: the first batch and three after it.
  const hung = (): number => r.requests.filter((q) => q.action === 'hang').length;
  await waitUntil(() => loggedDeliveries(pp).size >= 250 && hung() >= 4, 60_000, () => `${loggedDeliveries(pp).size} logged, ${hung()} hung`);

  // Every process of the tree started: the primary and its workers, all gone after the kill.
  const tree = [mta.proc.pid!, ...(childrenByParent().get(mta.proc.pid!) ?? [])];
  expect(tree.length).toBe(3);
  const requestsBeforeKill = r.requests.length;
  await mta.crash();
  // SIGKILL is asynchronous: wait until no pid of the tree runs (gone, or a zombie not yet reaped by init).
  const running = (): number[] => tree.filter((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
    } catch {
      return false;
    }
  });
  await waitUntil(() => running().length === 0, 5000, () => `still running: ${running().join(', ')}`);
  const before = r.requests.slice(0, requestsBeforeKill);
  const ackedBeforeKill = new Set(before.filter(ok).flatMap(idsOf));
  const unacked = new Set(before.filter((q) => !ok(q)).flatMap(idsOf));
  const loggedBeforeRestart = loggedDeliveries(pp);

  r.setOtherwise({ status: 200 });
  mta = await start(config, pp);
  const logged = (): Map<string, Record<string, unknown>> => new Map([...loggedBeforeRestart, ...loggedDeliveries(pp)]);
  await waitUntil(() => missing(logged().keys(), r.acceptedCounts()).length === 0, 90_000, () => `missing ${missing(logged().keys(), r.acceptedCounts()).length}\n${mta.log().slice(-1500)}`);

  // Every event arrived; a duplicate (an id in more than one request) is only of a batch not acknowledged before the kill.
  const all = logged();
  expect(missing(all.keys(), r.acceptedCounts())).toEqual([]);
  const times = new Map<string, number>();
  for (const q of r.requests) for (const id of idsOf(q)) times.set(id, (times.get(id) ?? 0) + 1);
  const duplicated = [...times].filter(([, n]) => n > 1).map(([id]) => id);
  expect(duplicated.length).toBeGreaterThan(0); // the hung batches were sent again
  expect({ duplicatedButAcknowledged: duplicated.filter((id) => ackedBeforeKill.has(id)).length }).toEqual({ duplicatedButAcknowledged: 0 });
  expect(duplicated.every((id) => unacked.has(id))).toBe(true);
  const resentAcked = r.requests.slice(requestsBeforeKill).flatMap(idsOf).filter((id) => ackedBeforeKill.has(id));
  expect({ resentAcknowledged: resentAcked.length }).toEqual({ resentAcknowledged: 0 });
  expect(r.requests.every((q) => q.verified[0])).toBe(true);
  await mta.stop();
});

/** The live sink's lag per delivery event: from the attempt's `time` to the receiver having the batch. */
function lags(r: WebhookReceiver): number[] {
  return r
    .accepted()
    .flatMap((q) => q.events.filter((e) => e.event === 'delivery').map((e) => q.receivedAt - Date.parse(String(e.time))))
    .sort((a, b) => a - b);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

test('a second, dead sink (a receiver that never answers) does not slow the first: lag percentiles with and without it, same load; its status shows its backlog', async () => {
  const N = 200;
  const measure = async (withDead: boolean): Promise<{ lags: number[]; status?: unknown; dead?: WebhookReceiver }> => {
    const live = await receiver();
    const dead = withDead ? await receiver([], 'hang') : undefined;
    const hooks: Hook[] = [{ name: 'live', receiver: live, timeout: '10s' }];
    if (dead) hooks.push({ name: 'dead', receiver: dead, timeout: '30s' });
    const { config, pp } = setup(hooks);
    const mta = await start(config, pp);
    await send(mta, N);
    await waitUntil(() => loggedDeliveries(pp).size >= N && missing(loggedDeliveries(pp).keys(), live.acceptedCounts()).length === 0, 60_000, () => `${loggedDeliveries(pp).size} logged, ${live.acceptedCounts().size} accepted`);
    let status: unknown;
    if (dead) {
      status = await (await fetch(`${mta.adminUrl}/events/status`, { headers: ADMIN_AUTH })).json();
    }
    await mta.stop();
    return { lags: lags(live), status, dead };
  };
  const alone = await measure(false);
  const beside = await measure(true);
  const summary = (l: number[]): string => `p50 ${percentile(l, 50)} ms, p90 ${percentile(l, 90)} ms, p99 ${percentile(l, 99)} ms, n ${l.length}`;
  console.log(`live sink lag alone: ${summary(alone.lags)}; beside a dead sink: ${summary(beside.lags)}`);
  expect(alone.lags.length).toBeGreaterThanOrEqual(N);
  expect(beside.lags.length).toBeGreaterThanOrEqual(N);
  // Generous: a dead sink that held up the live one would add its 30 s timeout, not a fraction of a second.
  for (const p of [50, 90]) expect(percentile(beside.lags, p)).toBeLessThanOrEqual(4 * Math.max(percentile(alone.lags, p), 250));

  // The dead sink got batches (they hung), and its status names its backlog.
  expect(beside.dead!.requests.length).toBeGreaterThan(0);
  const sinks = (beside.status as { sinks: { sink: string; waitingEvents: number; inFlightBatches: number; deliveredEvents: number }[] }).sinks;
  const dead = sinks.find((s) => s.sink === 'dead')!;
  const live = sinks.find((s) => s.sink === 'live')!;
  expect(dead.waitingEvents).toBeGreaterThanOrEqual(N);
  expect(dead.inFlightBatches).toBeGreaterThan(0);
  expect(dead.deliveredEvents).toBe(0);
  expect(live.deliveredEvents).toBeGreaterThanOrEqual(N);
});
