import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { parseConfig } from '../../../../runtime/shared/config/load';
import { EventLog as AttemptLog } from '../../../../runtime/mta/events/event-log';
import { DirectConnector } from '../../../../runtime/mta/delivery/connect/direct-connector';
import { buildDsn } from '../../../../runtime/mta/delivery/records/dsn';
import { DeliveryEngine } from '../../../../runtime/mta/delivery/engine';
import { Router } from '../../../../runtime/mta/delivery/routing/router';
import { newMessageId } from '../../../../runtime/mta/message-id';
import { SpoolPartition } from '../../../../runtime/mta/spool/partition';
import { deliveryConfigYaml } from '../../../helpers/config';
import { ScriptedMx } from '../../../helpers/scripted-mx';
import { inboundMetrics } from '../../../../runtime/mta/inbound/inbound-metrics';
import { startInboundListener, type InboundListener } from '../../../../runtime/mta/inbound/inbound-listener';
import { parseReport } from '../../../../runtime/mta/inbound/report';
import type { EventWriter, NewEvent } from '../../../../runtime/mta/events/types';
import { captureLogger, waitUntil } from '../../../helpers/proxy-fixtures';
import { SmtpDialog } from '../../../helpers/smtp-dialog';
import { swaks } from '../../../helpers/swaks';
import { ManualTimers } from '../../../helpers/manual-timers';
import { VOLLEY } from '../../../helpers/mta-process';
import { tempDir } from '../../../helpers/tmp';

const KEY = Buffer.from('volley-fixture-verp-key-32-bytes');
const dir = tempDir();
const unmatchedDir = join(dir, 'inbound', 'unmatched');
const POSTFIX_RCPT = 'bounce+01m8rdaberfsbsjvjm2crmgmxkdsqjwwvncdm2wxbkcns40sbrc5pq0v355sq6ax0rsynq3ze4wksb6be@bounces.shop.example';

/** An EventWriter that records, and whose next write can be held or made to fail. */
class RecordingWriter implements EventWriter {
  readonly written: NewEvent[] = [];
  calls = 0;
  next?: { hold?: Promise<void>; fail?: Error };
  async write(events: readonly NewEvent[]): Promise<void> {
    this.calls++;
    const plan = this.next;
    this.next = undefined;
    if (plan?.hold) await plan.hold;
    if (plan?.fail) throw plan.fail;
    this.written.push(...events);
  }
}

const writer = new RecordingWriter();
const log = captureLogger();
let listener: InboundListener;

beforeAll(async () => {
  listener = await startInboundListener(
    { address: '127.0.0.1', port: 0, domains: ['bounces.shop.example'], maxMessageSize: 16 * 1024, unmatchedMax: 1024 * 1024, maxReportRecipients: 1000, verp: { domain: 'bounces.shop.example', prefix: 'bounce', secretFile: '-' } },
    { events: writer, persistentPath: dir, logger: log.logger, verpSecret: KEY, nodeId: 'node-a', hostname: 'inbound.test', reportThreadScript: VOLLEY },
  );
});
afterAll(() => listener.close());

function fixture(name: string): string {
  // As SMTP carries it: CRLF line ends, leading dots doubled.
  return readFileSync(join(__dirname, '../../../fixtures/reports', name), 'latin1').replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..');
}

async function session(): Promise<SmtpDialog> {
  const s = await SmtpDialog.open(listener.port);
  expect((await s.reply()).code).toBe(220);
  expect((await s.command('EHLO mail.example.net')).code).toBe(250);
  return s;
}

const unmatchedFiles = (): string[] => readdirSync(unmatchedDir).filter((f) => f.endsWith('.eml'));

test('mail for another domain is refused 550 5.7.1 (swaks): no relay', async () => {
  const r = await swaks(['--server', '127.0.0.1', '--port', String(listener.port), '--from', 'someone@example.net', '--to', 'victim@elsewhere.example', '--quit-after', 'RCPT']);
  expect(r.output).toMatch(/<\*\* +550 5\.7\.1 <victim@elsewhere\.example>: relay access denied/);
});

test('no AUTH is offered, and AUTH is refused', async () => {
  const s = await SmtpDialog.open(listener.port);
  await s.reply();
  const ehlo = await s.command('EHLO client.test');
  expect(ehlo.text).not.toMatch(/AUTH/);
  expect((await s.command('AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=')).code).toBeGreaterThanOrEqual(500);
  await s.quit();
});

test('oversize mail gets 552, by SIZE= and by what arrives; the session goes on', async () => {
  const s = await session();
  const bySize = await s.command('MAIL FROM:<> SIZE=999999');
  expect(bySize.code).toBe(552);
  const big = `Subject: big\r\n\r\n${'x'.repeat(1000)}\r\n`.repeat(20);
  const r = await s.transaction('', ['postmaster@bounces.shop.example'], big);
  expect(r.code).toBe(552);
  expect(r.text).toMatch(/^5\.3\.4/);
  expect(writer.calls).toBe(0);
  expect((await s.command('MAIL FROM:<>')).code).toBe(250);
  await s.quit();
});

test('a DSN over SMTP: its events are written before the 250, and only then answered', async () => {
  let release!: () => void;
  writer.next = { hold: new Promise<void>((r) => (release = r)) };
  const s = await session();
  expect((await s.command('MAIL FROM:<>')).code).toBe(250);
  expect((await s.command(`RCPT TO:<${POSTFIX_RCPT}>`)).code).toBe(250);
  expect((await s.command('DATA')).code).toBe(354);
  s.send(fixture('postfix-dsn.eml'));
  s.send('\r\n.\r\n');
  const order: string[] = [];
  const answered = s.reply().then((r) => {
    order.push('reply');
    return r;
  });
  await waitUntil(() => writer.calls === 1);
  order.push('durable');
  release();
  const r = await answered;
  expect(r.code).toBe(250);
  // (The 451 test below shows the answer is the write's outcome, not sent beside it.)
  expect(order).toEqual(['durable', 'reply']);
  expect(writer.written).toEqual([
    expect.objectContaining({ event: 'bounce', status: 'failed', message_id: '01M8RDABERFSBSJVJM2CRMGMXK', recipient: 'no.such.user@example.net', matched_by: 'verp', node: 'node-a', bounce_category: 'bad-mailbox' }),
  ]);
  await s.quit();
});

test('when the events cannot be written the answer is 451 (the sender retries), and nothing is kept as unmatched', async () => {
  writer.next = { fail: Object.assign(new Error('disk full'), { code: 'ENOSPC' }) };
  const before = writer.written.length;
  const s = await session();
  const r = await s.transaction('', ['bounces@bounces.shop.example'], fixture('multi-recipient-dsn.eml'));
  expect(r.code).toBe(451);
  expect(writer.written).toHaveLength(before);
  // The retry goes through.
  const again = await s.transaction('', ['bounces@bounces.shop.example'], fixture('multi-recipient-dsn.eml'));
  expect(again.code).toBe(250);
  expect(writer.written.slice(before).map((e) => `${e.event}:${(e as { status?: string }).status}:${e.recipient}`)).toEqual(['bounce:failed:alice@example.com', 'bounce:delayed:bob@example.com']);
  expect(unmatchedFiles()).toEqual([]);
  await s.quit();
});

test('garbage, a plain reply and a forged bounce are answered 250, kept in unmatched/ with a log line and a count, and the listener stays up', async () => {
  const counted = async (reason: string): Promise<number> => (await inboundMetrics.unmatched.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
  const before = writer.written.length;
  const s = await session();
  expect((await s.transaction('', ['bounces@bounces.shop.example'], fixture('garbage.eml'))).code).toBe(250);
  expect((await s.transaction('jane@example.com', ['bounces@bounces.shop.example'], fixture('plain-mail.eml'))).code).toBe(250);
  const forgedTo = /^To: (\S+)/m.exec(fixture('forged-verp-dsn.eml'))![1];
  expect((await s.transaction('', [forgedTo], fixture('forged-verp-dsn.eml'))).code).toBe(250);
  // Still serving, on the same session: a real complaint maps.
  expect((await s.transaction('staff@hotmail.com', ['fbl@bounces.shop.example'], fixture('jmrp-arf.eml'))).code).toBe(250);
  await s.quit();

  expect(writer.written.slice(before)).toEqual([expect.objectContaining({ event: 'complaint', message_id: '01M8RDA8H0MHNEGJ7530SMX9WX', recipient: 'reader@outlook.com' })]);
  const files = unmatchedFiles().sort();
  expect(files).toHaveLength(3);
  for (const f of files) expect(f).toMatch(/^\d{8}T\d{9}Z-[0-9a-f]{12}\.eml$/);
  // Kept whole, with the envelope on top.
  const forged = files.map((f) => readFileSync(join(unmatchedDir, f), 'latin1')).find((text) => text.includes('4Yab2c3D4eF'))!;
  expect(forged).toMatch(new RegExp(`^Return-Path: <>\\r\\nReceived: from mail\\.example\\.net [\\s\\S]*for <${forgedTo.replace(/[+.]/g, '\\$&')}>`));
  expect(forged).toContain(fixture('forged-verp-dsn.eml'));
  expect([await counted('unparseable'), await counted('not-a-report'), await counted('forged-token')]).toEqual([1, 1, 1]);
  const lines = log.lines().filter((l) => l.msg === 'inbound: message not mapped to any sent message: kept in inbound/unmatched/');
  expect(lines.map((l) => l.reason)).toEqual(['unparseable', 'not-a-report', 'forged-token']);
  expect(lines.map((l) => l.file).sort()).toEqual(files);
});

test('round trip: the engine sends a VERP\'d message over SMTP, the MX accepts it, its later DSN to that return path becomes a bounce for that message and recipient', async () => {
  const keyFile = join(dir, 'verp.key');
  writeFileSync(keyFile, KEY);
  const mx = new ScriptedMx();
  await mx.listen();
  const config = parseConfig(
    deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: ${mx.port} }]
inbound: { domains: [bounces.shop.example], verp: { domain: bounces.shop.example, secret_file: ${keyFile} } }
`),
  );
  const partition = await SpoolPartition.open({ dir: join(dir, 'rt', 'spool'), fsync: false });
  const attemptLog = new AttemptLog({ dir: join(dir, 'rt', 'attempts'), name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  const engine = new DeliveryEngine({ partitions: [partition], config, connector: new DirectConnector(), router: new Router({ routes: config.routes, servers: [] }), attemptLog, logger: pino({ level: 'silent' }), nodeId: 'node-a' });
  const id = newMessageId();
  const original = Buffer.from(`Received: from [127.0.0.1]\r\n\tby mta.test.example (Volley) with HTTP id ${id};\r\n\tTue, 01 Dec 2026 09:00:00 +0000\r\nX-Volley-Id: ${id}\r\nFrom: news@shop.example\r\nTo: later-gone@example.org\r\nSubject: hi\r\n\r\nbody\r\n`);
  await partition.appendMessage({ id, from: 'news@shop.example', to: ['later-gone@example.org', 'fine@example.org'], received: Date.now(), via: 'http', size: original.length }, original);
  engine.start();
  try {
    await mx.waitFor(2);
  } finally {
    await engine.stop();
    await attemptLog.close();
    await partition.close();
    await mx.close();
  }
  const sent = mx.messages.find((m) => m.to[0] === 'later-gone@example.org')!;
  expect(sent.to).toEqual(['later-gone@example.org']);
  expect(sent.from).toMatch(/^bounce\+[0-9a-z]+@bounces\.shop\.example$/);

  // Days later the receiving side gives up on that mailbox and sends a DSN to the return path.
  const dsn = buildDsn({ reportingMta: 'mx.example.org', originalFrom: sent.from, messageId: 'Q1234', originalMessage: sent.raw, failures: [{ rcpt: 'later-gone@example.org', reply: { code: 550, enhanced: '5.2.1', text: 'mailbox disabled' }, expired: false }], arrival: new Date() });
  const before = writer.written.length;
  const s = await session();
  const r = await s.transaction('', [sent.from], dsn.toString('latin1').replace(/^\./gm, '..'));
  expect(r.code).toBe(250);
  await s.quit();
  expect(writer.written.slice(before)).toEqual([
    expect.objectContaining({ event: 'bounce', status: 'failed', message_id: id, recipient: 'later-gone@example.org', matched_by: 'verp', enhanced_code: '5.2.1', bounce_category: 'inactive', reporting_mta: 'mx.example.org' }),
  ]);
});

test('a report sent again (our 250 was lost, the sender retries) makes events with the same event_ids, so every sink deduplicates them', async () => {
  const logDir = join(dir, 'retried', 'events');
  const eventLog = new AttemptLog({ dir: logDir, name: 'primary', node: 'node-a', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  const second = await startInboundListener(
    { address: '127.0.0.1', port: 0, domains: ['bounces.shop.example'], maxMessageSize: 16 * 1024, unmatchedMax: 1024 * 1024, maxReportRecipients: 1000 },
    { events: eventLog, persistentPath: join(dir, 'retried'), logger: pino({ level: 'silent' }), nodeId: 'node-a', hostname: 'inbound.test', reportThreadScript: VOLLEY },
  );
  try {
    // The retry may come in another connection, even to another node of the fleet: nothing of the session goes into the ids.
    for (let i = 0; i < 2; i++) {
      const s = await SmtpDialog.open(second.port);
      expect((await s.reply()).code).toBe(220);
      expect((await s.command('EHLO mail.example.net')).code).toBe(250);
      expect((await s.transaction('', ['bounces@bounces.shop.example'], fixture('multi-recipient-dsn.eml'))).code).toBe(250);
      await s.quit();
    }
  } finally {
    await second.close();
    await eventLog.close();
  }
  const lines = readdirSync(logDir).flatMap((f) => readFileSync(join(logDir, f), 'utf8').split('\n').filter(Boolean)).map((l) => JSON.parse(l) as NewEvent);
  expect(lines.map((e) => `${e.event}:${e.recipient}`)).toEqual(['bounce:alice@example.com', 'bounce:bob@example.com', 'bounce:alice@example.com', 'bounce:bob@example.com']);
  expect(lines[2].event_id).toBe(lines[0].event_id);
  expect(lines[3].event_id).toBe(lines[1].event_id);
  expect(lines[0].event_id).not.toBe(lines[1].event_id);
});

/** A DSN naming n failed recipients (tag-0@ ... tag-(n-1)@example.net) of message id, matched by its quoted X-Volley-Id. */
function bigDsn(id: string, n: number, tag: string): string {
  const groups = Array.from({ length: n }, (_, i) => `Final-Recipient: rfc822; ${tag}-${i}@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n`);
  return `From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@bounces.shop.example\r\nSubject: failed\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nUndeliverable.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n${groups.join('\r\n')}\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\nX-Volley-Id: ${id}\r\nFrom: news@shop.example\r\n\r\n--b--\r\n`;
}

describe('large reports', () => {
  const home = join(dir, 'large');
  const events = new RecordingWriter();
  const capture = captureLogger();
  let active = 0;
  let most = 0;
  let entered = 0;
  let holdFirst: Promise<void> | undefined;
  let big: InboundListener;

  beforeAll(async () => {
    big = await startInboundListener(
      { address: '127.0.0.1', port: 0, domains: ['bounces.shop.example'], maxMessageSize: 1024 * 1024, unmatchedMax: 64 * 1024 * 1024, maxReportRecipients: 600 },
      {
        events,
        persistentPath: home,
        logger: capture.logger,
        nodeId: 'node-a',
        hostname: 'inbound.test',
        // The real parser, watched: how many run at once, and the first held while the test wants it held.
        parse: async (raw, limits) => {
          entered++;
          active++;
          most = Math.max(most, active);
          try {
            if (entered === 1 && holdFirst) await holdFirst;
            return await parseReport(raw, limits);
          } finally {
            active--;
          }
        },
      },
    );
  });
  afterAll(() => big.close());

  const open = async (): Promise<SmtpDialog> => {
    const s = await SmtpDialog.open(big.port);
    expect((await s.reply()).code).toBe(220);
    expect((await s.command('EHLO mx.example.net')).code).toBe(250);
    return s;
  };

  test('several large reports sent at once on their own connections are parsed one at a time, the rest wait for their 250, and every one gets its events', async () => {
    const waiting = async (): Promise<number> => (await inboundMetrics.parseWaiting.get()).values[0]?.value ?? 0;
    let release!: () => void;
    holdFirst = new Promise<void>((r) => (release = r));
    const reports = ['a', 'b', 'c', 'd'].map((tag) => ({ tag, id: newMessageId() }));
    const sessions = await Promise.all(reports.map(() => open()));
    const answers = reports.map((r, i) => sessions[i].transaction('', ['bounces@bounces.shop.example'], bigDsn(r.id, 500, r.tag)));
    // The first parse is held until every other report is in whole: either
    // they wait their turn (the bound) or they are parsed beside it (none).
    await waitUntil(async () => entered === reports.length || (entered === 1 && (await waiting()) === reports.length - 1), 30_000, () => `entered ${entered}`);
    release();
    const replies = await Promise.all(answers);
    for (const s of sessions) await s.quit();
    expect(replies.map((r) => r.code)).toEqual([250, 250, 250, 250]);
    expect(most).toBe(1);
    expect(await waiting()).toBe(0);
    for (const r of reports) {
      const mine = events.written.filter((e) => e.message_id === r.id);
      expect(mine).toHaveLength(500);
      expect(new Set(mine.map((e) => e.recipient)).size).toBe(500);
    }
  });

  test('past max_report_recipients (600 here) the first 600 recipients of a DSN, and of an ARF report, make events; the report is also kept whole in unmatched/, counted and logged once', async () => {
    const keptDir = join(home, 'inbound', 'unmatched');
    const counted = async (): Promise<number> => (await inboundMetrics.unmatched.get()).values.find((v) => v.labels.reason === 'too-many-recipients')?.value ?? 0;
    const truncatedBefore = (await inboundMetrics.truncated.get()).values[0]?.value ?? 0;
    const countedBefore = await counted();
    const dsnId = newMessageId();
    const arfId = newMessageId();
    const dsn = bigDsn(dsnId, 700, 'many');
    const rcpts = Array.from({ length: 700 }, (_, i) => `Original-Rcpt-To: <reader-${i}@example.org>\r\n`).join('');
    const arf = `From: fbl@isp.example.org\r\nTo: fbl@bounces.shop.example\r\nSubject: complaint\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary="f"\r\n\r\n--f\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n--f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: fbl/1\r\nVersion: 1\r\n${rcpts}\r\n--f\r\nContent-Type: text/rfc822-headers\r\n\r\nX-Volley-Id: ${arfId}\r\nFrom: news@shop.example\r\n\r\n--f--\r\n`;
    const s = await open();
    const r1 = await s.transaction('', ['bounces@bounces.shop.example'], dsn);
    const r2 = await s.transaction('fbl@isp.example.org', ['fbl@bounces.shop.example'], arf);
    await s.quit();

    expect([r1.code, r2.code]).toEqual([250, 250]);
    expect(r1.text).toMatch(/600 event\(s\) for .*; 100 more recipient\(s\) past the limit, kept/);
    const bounces = events.written.filter((e) => e.message_id === dsnId);
    expect(bounces.map((e) => e.recipient)).toEqual(Array.from({ length: 600 }, (_, i) => `many-${i}@example.net`));
    const complaints = events.written.filter((e) => e.message_id === arfId);
    expect(complaints.map((e) => `${e.event}:${e.recipient}`)).toEqual(Array.from({ length: 600 }, (_, i) => `complaint:reader-${i}@example.org`));

    // Nothing the report said is lost: it is kept whole, envelope on top.
    const kept = readdirSync(keptDir).filter((f) => f.endsWith('.eml')).map((f) => readFileSync(join(keptDir, f), 'latin1'));
    expect(kept).toHaveLength(2);
    expect(kept.find((k) => k.includes(dsnId))).toMatch(/^Return-Path: <>\r\n[\s\S]*many-699@example\.net/);
    expect(kept.find((k) => k.includes(arfId))).toContain('reader-699@example.org');
    expect(await counted()).toBe(countedBefore + 2);
    expect((await inboundMetrics.truncated.get()).values[0]?.value).toBe(truncatedBefore + 2);
    const lines = capture.lines().filter((l) => /max_report_recipients/.test(String(l.msg)));
    expect(lines.map((l) => [l.message_id, l.events, l.omitted])).toEqual([
      [dsnId, 600, 100],
      [arfId, 600, 100],
    ]);
  });

  test('when a report past the limit cannot be kept, the answer is 451 (the sender retries) and the retry repeats the same event_ids', async () => {
    const keptDir = join(home, 'inbound', 'unmatched');
    const id = newMessageId();
    const report = bigDsn(id, 601, 'retry');
    // unmatched/ made a plain file: keeping fails with ENOTDIR.
    const aside = `${keptDir}.aside`;
    renameSync(keptDir, aside);
    writeFileSync(keptDir, '');
    const s = await open();
    try {
      const first = await s.transaction('', ['bounces@bounces.shop.example'], report);
      expect(first.code).toBe(451);
    } finally {
      rmSync(keptDir);
      renameSync(aside, keptDir);
    }
    const again = await s.transaction('', ['bounces@bounces.shop.example'], report);
    await s.quit();
    expect(again.code).toBe(250);
    const mine = events.written.filter((e) => e.message_id === id);
    // Written with the first try (the write comes before the keeping), and again: the same ids, which sinks deduplicate.
    expect(mine).toHaveLength(1200);
    expect(mine.slice(600).map((e) => e.event_id)).toEqual(mine.slice(0, 600).map((e) => e.event_id));
    expect(readdirSync(keptDir).filter((f) => f.endsWith('.eml')).map((f) => readFileSync(join(keptDir, f), 'latin1')).filter((k) => k.includes(id))).toHaveLength(1);
    expect(capture.lines().some((l) => l.msg === 'inbound: could not keep a report past inbound.max_report_recipients; the sender will retry' && l.message_id === id)).toBe(true);
  });
});

describe('a stuck or abandoned parse', () => {
  const home = join(dir, 'stuck');
  const events = new RecordingWriter();
  const capture = captureLogger();
  const timers = new ManualTimers();
  /** The X-Volley-Id of each report whose parse started, in order. */
  const started: string[] = [];
  /** The stop signal each parse was given, by X-Volley-Id. */
  const stops = new Map<string, AbortSignal>();
  /** Set: the next parse does not settle until the test calls it (then with the real result). */
  let holdNext = false;
  let settleHeld: (() => void) | undefined;
  let stuck: InboundListener;

  beforeAll(async () => {
    stuck = await startInboundListener(
      { address: '127.0.0.1', port: 0, domains: ['bounces.shop.example'], maxMessageSize: 1024 * 1024, unmatchedMax: 64 * 1024 * 1024, maxReportRecipients: 1000 },
      {
        events,
        persistentPath: home,
        logger: capture.logger,
        nodeId: 'node-a',
        hostname: 'inbound.test',
        clock: timers,
        // The real parser; one parse can be made to hang, as mailparser's have (nodemailer/mailparser #224, #263).
        parse: async (raw, limits, stop) => {
          const id = /X-Volley-Id: (\S+)/.exec(raw.toString('latin1'))?.[1] ?? '?';
          started.push(id);
          stops.set(id, stop);
          const real = await parseReport(raw, limits);
          if (!holdNext) return real;
          holdNext = false;
          return new Promise((resolve) => (settleHeld = () => resolve(real)));
        },
      },
    );
  });
  afterAll(() => stuck.close());

  const open = async (): Promise<SmtpDialog> => {
    const s = await SmtpDialog.open(stuck.port);
    expect((await s.reply()).code).toBe(220);
    expect((await s.command('EHLO mx.example.net')).code).toBe(250);
    return s;
  };
  const waiting = async (): Promise<number> => (await inboundMetrics.parseWaiting.get()).values[0]?.value ?? 0;
  const keptDir = join(home, 'inbound', 'unmatched');
  const kept = (): string[] => readdirSync(keptDir).filter((f) => f.endsWith('.eml')).map((f) => readFileSync(join(keptDir, f), 'latin1'));

  test('a parse that never settles is given up at its deadline: its report is kept as parse-timeout and answered 250, the next report is parsed, and the late result makes no event', async () => {
    const counted = async (): Promise<number> => (await inboundMetrics.unmatched.get()).values.find((v) => v.labels.reason === 'parse-timeout')?.value ?? 0;
    const countedBefore = await counted();
    const [hung, next] = [newMessageId(), newMessageId()];
    holdNext = true;
    const a = await open();
    const b = await open();
    const answerA = a.transaction('', ['bounces@bounces.shop.example'], bigDsn(hung, 1, 'hung'));
    await waitUntil(() => started.includes(hung));
    const answerB = b.transaction('', ['bounces@bounces.shop.example'], bigDsn(next, 1, 'next'));
    await waitUntil(async () => (await waiting()) === 1);
    // The hung parse's deadline is set (30 s); its time comes.
    await waitUntil(() => timers.pending().length === 1, 5_000, () => `pending timers: ${JSON.stringify(timers.pending())}`);
    expect(timers.pending()).toEqual([30_000]);
    timers.fire();

    const [ra, rb] = await Promise.all([answerA, answerB]);
    expect([ra.code, ra.text]).toEqual([250, '2.0.0 Ok: kept']);
    expect(rb.code).toBe(250);
    expect(events.written.map((e) => e.message_id)).toEqual([next]);
    expect(kept().filter((k) => k.includes(hung))).toHaveLength(1);
    expect(await counted()).toBe(countedBefore + 1);
    expect(capture.lines().filter((l) => l.reason === 'parse-timeout').map((l) => l.msg)).toEqual(['inbound: message not mapped to any sent message: kept in inbound/unmatched/']);
    // Given up and told to stop (the report thread is then terminated, its memory freed), not left running; the parse in time was not.
    expect(stops.get(hung)?.aborted).toBe(true);
    expect(stops.get(hung)?.reason).toMatchObject({ code: 'parse-timeout' });
    expect(stops.get(next)?.aborted).toBe(false);

    // The hung parse finishes after all: its result goes nowhere.
    settleHeld!();
    const later = newMessageId();
    expect((await a.transaction('', ['bounces@bounces.shop.example'], bigDsn(later, 1, 'later'))).code).toBe(250);
    expect(events.written.map((e) => e.message_id)).toEqual([next, later]);
    await a.quit();
    await b.quit();
  });

  test('a report given up at its deadline that cannot be kept is answered 451 (the sender retries), and the listener goes on', async () => {
    const id = newMessageId();
    holdNext = true;
    // unmatched/ made a plain file: keeping fails with ENOTDIR.
    const aside = `${keptDir}.aside`;
    renameSync(keptDir, aside);
    writeFileSync(keptDir, '');
    const s = await open();
    try {
      const answer = s.transaction('', ['bounces@bounces.shop.example'], bigDsn(id, 1, 'unkept'));
      await waitUntil(() => timers.pending().length === 1);
      timers.fire();
      expect((await answer).code).toBe(451);
    } finally {
      rmSync(keptDir);
      renameSync(aside, keptDir);
    }
    settleHeld!();
    // The retry is parsed and mapped.
    expect((await s.transaction('', ['bounces@bounces.shop.example'], bigDsn(id, 1, 'unkept'))).code).toBe(250);
    await s.quit();
    expect(events.written.filter((e) => e.message_id === id)).toHaveLength(1);
    expect(capture.lines().some((l) => l.msg === 'inbound: could not keep an unmatched message; the sender will retry' && l.reason === 'parse-timeout')).toBe(true);
  });

  test('a report whose sender closed its session while it waited is dropped: never parsed, no longer held, counted and logged once', async () => {
    const dropped = async (): Promise<number> => (await inboundMetrics.parseDropped.get()).values[0]?.value ?? 0;
    const droppedBefore = await dropped();
    const [first, gone, after] = [newMessageId(), newMessageId(), newMessageId()];
    holdNext = true;
    const a = await open();
    const answerA = a.transaction('', ['bounces@bounces.shop.example'], bigDsn(first, 1, 'first'));
    await waitUntil(() => started.includes(first));
    const b = await open();
    void b.transaction('', ['bounces@bounces.shop.example'], bigDsn(gone, 1, 'gone')).catch(() => undefined);
    await waitUntil(async () => (await waiting()) === 1);
    b.destroy();
    // Gone from the queue at once, while the parse ahead of it still runs.
    await waitUntil(async () => (await waiting()) === 0 && (await dropped()) === droppedBefore + 1, 5_000, () => `dropped ${droppedBefore}+?`);

    settleHeld!();
    expect((await answerA).code).toBe(250);
    const c = await open();
    expect((await c.transaction('', ['bounces@bounces.shop.example'], bigDsn(after, 1, 'after'))).code).toBe(250);
    await a.quit();
    await c.quit();
    expect(started.filter((id) => id === gone)).toEqual([]);
    expect(events.written.filter((e) => e.message_id === gone)).toEqual([]);
    expect(events.written.filter((e) => e.message_id === after)).toHaveLength(1);
    expect(timers.pending()).toEqual([]);
    const lines = capture.lines().filter((l) => /closed its session before its report was parsed/.test(String(l.msg)));
    expect(lines).toHaveLength(1);
  });
});

describe('while `volley drain` has the node stopped (its last events handed over, the node then retired)', () => {
  const home = join(dir, 'draining');
  const events = new RecordingWriter();
  let draining = false;
  let holdParse: Promise<void> | undefined;
  let parsing = 0;
  let node: InboundListener;

  beforeAll(async () => {
    node = await startInboundListener(
      { address: '127.0.0.1', port: 0, domains: ['bounces.shop.example'], maxMessageSize: 16 * 1024, unmatchedMax: 1024 * 1024, maxReportRecipients: 1000 },
      {
        events,
        persistentPath: home,
        logger: pino({ level: 'silent' }),
        nodeId: 'node-a',
        hostname: 'inbound.test',
        draining: () => draining,
        parse: async (raw, limits) => {
          parsing++;
          if (holdParse) await holdParse;
          return parseReport(raw, limits);
        },
      },
    );
  });
  afterAll(() => node.close());

  const open = async (): Promise<SmtpDialog> => {
    const s = await SmtpDialog.open(node.port);
    expect((await s.reply()).code).toBe(220);
    expect((await s.command('EHLO mx.example.net')).code).toBe(250);
    return s;
  };
  const unmatchedHere = (): string[] => readdirSync(join(home, 'inbound', 'unmatched')).filter((f) => f.endsWith('.eml'));

  test('a report is refused 451 at MAIL, and one already being parsed when the drain began is refused 451 after it: no event, nothing kept; after a resume they are taken', async () => {
    const s = await open();
    // Parsed while the drain begins: the answer comes after the hand-over, so it must not write there.
    let release!: () => void;
    holdParse = new Promise<void>((r) => (release = r));
    const inParse = s.transaction('', ['bounces@bounces.shop.example'], fixture('exim-dsn.eml'));
    await waitUntil(() => parsing === 1);
    draining = true;
    release();
    holdParse = undefined;
    expect(await inParse).toMatchObject({ code: 451, text: expect.stringContaining('4.3.2') });
    // A new transaction: refused before its DATA is sent; an unmatched one is not kept either.
    expect((await s.transaction('', ['bounces@bounces.shop.example'], fixture('garbage.eml'))).code).toBe(451);
    expect({ events: events.written, calls: events.calls, kept: unmatchedHere() }).toEqual({ events: [], calls: 0, kept: [] });
    // Resumed: the sender's retry is taken.
    draining = false;
    expect((await s.transaction('', ['bounces@bounces.shop.example'], fixture('exim-dsn.eml'))).code).toBe(250);
    expect((await s.transaction('', ['bounces@bounces.shop.example'], fixture('garbage.eml'))).code).toBe(250);
    await s.quit();
    expect(events.written.map((e) => e.event)).toEqual(['bounce']);
    expect(unmatchedHere()).toHaveLength(1);
  });
});

test.each([
  ['exits', 'process.exit(134);'],
  ['throws (as an out-of-memory thread does)', "setImmediate(() => { throw Object.assign(new Error('JS heap out of memory'), { code: 'ERR_WORKER_OUT_OF_MEMORY' }); });"],
])('a report thread that %s under a valid DSN: 451 (its sender sends it again), nothing kept; the same report killing it again is kept in unmatched/ (250)', async (name, die) => {
  // Stands in for the bundle: a thread that dies on its first report.
  const script = join(dir, `dying-thread-${name.split(' ')[0]}.js`);
  writeFileSync(script, `const { parentPort } = require('node:worker_threads');\nparentPort.on('message', () => { parentPort.postMessage({ kind: 'started' }); ${die} });\n`);
  const ownDir = join(dir, `dying-${name.split(' ')[0]}`);
  const events = new RecordingWriter();
  const dying = await startInboundListener(
    { address: '127.0.0.1', port: 0, domains: ['bounces.shop.example'], maxMessageSize: 16 * 1024, unmatchedMax: 1024 * 1024, maxReportRecipients: 1000, verp: { domain: 'bounces.shop.example', prefix: 'bounce', secretFile: '-' } },
    { events, persistentPath: ownDir, logger: pino({ level: 'silent' }), verpSecret: KEY, nodeId: 'node-a', hostname: 'inbound.test', reportThreadScript: script },
  );
  try {
    const s = await SmtpDialog.open(dying.port);
    await s.reply();
    await s.command('EHLO mail.example.net');
    const r = await s.transaction('', [POSTFIX_RCPT], fixture('postfix-dsn.eml'));
    expect(r.code).toBe(451);
    expect(events.written).toEqual([]);
    const kept = (): string[] => readdirSync(join(ownDir, 'inbound', 'unmatched')).filter((f) => f.endsWith('.eml'));
    expect(kept()).toEqual([]);
    // The same report killing the thread again always will: kept for an operator, not refused for good.
    const again = await s.transaction('', [POSTFIX_RCPT], fixture('postfix-dsn.eml'));
    expect(again.code).toBe(250);
    expect(kept()).toHaveLength(1);
    expect(events.written).toEqual([]);
    await s.quit();
  } finally {
    await dying.close();
  }
});
