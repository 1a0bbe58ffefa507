// Throttles are per node, however many workers share them: a real `volley
// mta` with 2 and 4 workers, mail injected over many sessions (the kernel
// spreads them over the workers), counted where it arrives. Message permits
// come in leased blocks, so the workers' throttle messages to the primary are
// far fewer than the messages delivered.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_AUTH, deliveryConfigYaml } from '../../../../helpers/config';
import { readAttempts } from '../../../../helpers/attempt-log';
import { startMta, type MtaProcess } from '../../../../helpers/mta-process';
import { startSmtpSink, type SmtpSinkHandle } from '../../../../helpers/postfix-tools';
import { waitUntil } from '../../../../helpers/proxy-fixtures';
import { ScriptedMx } from '../../../../helpers/scripted-mx';
import { inject, message } from '../../../../helpers/smtp-dialog';
import { tempDir } from '../../../../helpers/tmp';

const RATE = 50;

/** Injects `n` messages to `domain`, `sessions` at a time, each over a fresh session; their ids by recipient. */
async function injectMany(port: number, domain: string, n: number, sessions = 10): Promise<Map<string, string>> {
  let next = 0;
  const ids = new Map<string, string>();
  await Promise.all(
    Array.from({ length: sessions }, async () => {
      while (next < n) {
        const i = next++;
        ids.set(`r${i}@${domain}`, await inject(port, 'sender@shop.example', [`r${i}@${domain}`], message(`m${i}`)));
      }
    }),
  );
  return ids;
}

/** The message is held behind a throttle for at least `minMs` more, as the MTA itself says (GET /queue/messages/:id). */
async function heldFor(adminUrl: string, id: string, minMs: number): Promise<boolean> {
  const res = await fetch(`${adminUrl}/queue/messages/${id}`, { headers: ADMIN_AUTH });
  const why = res.ok ? ((await res.json()) as { state?: { why?: string } }).state?.why : undefined;
  const m = /^held by a throttle or backoff until (\S+)$/.exec(why ?? '');
  return m !== null && Date.parse(m[1]) - Date.now() >= minMs;
}

/** The workers (w0, w1, ...) whose attempt log has a delivery to `domain`: the limit was shared, not held by one. */
function deliveringWorkers(eventsDir: string, domain: string): string[] {
  const writers = new Set<string>();
  for (const f of readdirSync(eventsDir)) {
    const w = /^(w\d+)/.exec(f)?.[1];
    if (!w) continue;
    const text = readFileSync(join(eventsDir, f), 'utf8');
    if (text.split('\n').some((l) => l.includes(`@${domain}"`) && l.includes('"status":"delivered"'))) writers.add(w);
  }
  return [...writers].sort();
}

/** A counter's value per `op` label, from the primary's /metrics (all workers merged). */
async function counters(adminUrl: string, name: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(new RegExp(`^${name}\\{op="([^"]+)"\\} (\\S+)$`, 'gm'))) out.set(m[1], Number(m[2]));
  return out; // empty until a worker has sent one
}

describe.each([2, 4])('an MTA with %i workers', (workers) => {
  const dir = tempDir();
  const conn = new ScriptedMx({ holdMs: 100 });
  let sink: SmtpSinkHandle;
  let bulk: SmtpSinkHandle;
  let mta: MtaProcess;
  const eventsDir = join(dir, 'pp', 'log', 'events');

  beforeAll(async () => {
    await conn.listen();
    sink = await startSmtpSink();
    bulk = await startSmtpSink();
    const config = join(dir, 'volley.yaml');
    writeFileSync(
      config,
      deliveryConfigYaml(`routes:
  - { domain: conn.test, host: 127.0.0.1, port: ${conn.port} }
  - { domain: rate.test, host: 127.0.0.1, port: ${sink.port} }
  - { domain: bulk.test, host: 127.0.0.1, port: ${bulk.port} }
throttles:
  - { destination: conn.test, max_connections: 2 }
  - { destination: rate.test, max_messages_per_hour: ${RATE} }
  - { destination: bulk.test, max_messages_per_hour: 1000000 }
`),
    );
    mta = await startMta({ configPath: config, persistentPath: join(dir, 'pp'), workers });
  });
  afterAll(async () => {
    await mta?.stop();
    await conn.close();
    await sink?.stop();
    await bulk?.stop();
  });

  test('a limit of 2 connections is 2 for the node: the MX never sees a third, and everything arrives', async () => {
    await injectMany(mta.smtpPort, 'conn.test', 40);
    await waitUntil(() => conn.messages.length === 40, 30_000, () => `${conn.messages.length} of 40 arrived`);
    expect(conn.maxOpen).toBe(2);
    expect(deliveringWorkers(eventsDir, 'conn.test').length).toBeGreaterThan(1);
  });

  test(`${RATE} messages an hour is ${RATE} for the node: exactly that many arrive, the rest wait`, async () => {
    const ids = await injectMany(mta.smtpPort, 'rate.test', RATE + 20);
    await sink.waitForMessages(RATE, 30_000);
    const tried = (): Set<string> => new Set(readAttempts<{ recipient: string }>(eventsDir).filter((e) => e.recipient.endsWith('@rate.test')).map((e) => e.recipient));
    await waitUntil(() => tried().size >= RATE, 10_000, () => `${tried().size} logged`);
    // The others wait, neither sent nor failed: each is held by the hour's limit, most of an hour
    // ahead, as its worker says. Proof that nothing more goes, where a pause would only show nothing went yet.
    const waiting = [...ids].filter(([rcpt]) => !tried().has(rcpt)).map(([, id]) => id);
    expect(waiting).toHaveLength(20);
    for (const id of waiting) await waitUntil(() => heldFor(mta.adminUrl, id, 30 * 60_000), 10_000, () => `${id}: not held by the hour's limit`);
    expect(sink.messages()).toBe(RATE);
    expect(tried().size).toBe(RATE);
    expect(deliveringWorkers(eventsDir, 'rate.test').length).toBeGreaterThan(1);
  });

  test('message permits do not cost a round trip to the primary each: far fewer throttle messages than messages', async () => {
    const before = await counters(mta.adminUrl, 'volley_mta_throttle_ipc_total');
    const n = 400;
    await injectMany(mta.smtpPort, 'bulk.test', n, 20);
    await bulk.waitForMessages(n, 60_000);
    const after = await counters(mta.adminUrl, 'volley_mta_throttle_ipc_total');
    expect(after.size).toBeGreaterThan(0); // the connections' asks at least
    const delta = (op?: string): number => [...after].filter(([k]) => op === undefined || k === op).reduce((sum, [k, v]) => sum + v - (before.get(k) ?? 0), 0);
    // Before leases: one round trip per message for its permit, plus each connection's (pause, permit, release).
    // Now a block of permits per ask (at most 1/8 of the hour's million here, so 64), and the connections'.
    expect(delta('lease') / n).toBeLessThan(0.1);
    expect(delta() / n).toBeLessThan(0.5);
  });
});
