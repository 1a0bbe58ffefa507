// The inbound SMTP listener for bounces and feedback-loop reports, run by
// the MTA primary: it takes mail only for inbound.domains (never relays),
// reads each message as a DSN or an ARF report, writes the events it makes
// durably and only then answers 250. What it cannot map is kept in
// <persistent>/inbound/unmatched/ and still answered 250: a report is taken
// once, never bounced back to a mailer daemon that cannot read a bounce.

import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../../shared/clock';
import type { BounceRuleConfig, InboundConfig } from '../../shared/config/types';
import { endSocket } from '../../shared/end-socket';
import { errorCode } from '../../shared/errors';
import { listen } from '../../shared/listen';
import { BounceClassifier } from '../delivery/records/bounce-category';
import { Verp } from '../delivery/records/verp';
import type { EventWriter, NewEvent } from '../events/types';
import { isValidMailbox } from '../intake/address';
import { receivedHeader } from '../intake/headers';
import { reply, type Reply } from '../intake/smtp/reply';
import { SmtpSession, type SessionHandlers, type SessionInfo } from '../intake/smtp/session';
import { inboundMetrics } from './inbound-metrics';
import { ParseQueue } from './parse-queue';
import type { ParsedReport, ReportLimits } from './report';
import { ReportThread } from './report-thread';
import { SeenDigests } from './seen-digests';
import { matchReport, type MatchResult } from './report-matcher';
import { UnmatchedStore } from './unmatched-store';

export interface InboundDeps {
  events: EventWriter;
  persistentPath: string;
  logger: Logger;
  /** The VERP key (inbound.verp.secret_file, read by the primary); without it VERP tokens are not read. */
  verpSecret?: Buffer;
  nodeId: string;
  /** The greeting's name (default: the OS host name). */
  hostname?: string;
  /** The operator's bounce rules, so a DSN is classified as a synchronous failure would be. */
  bounceRules?: BounceRuleConfig[];
  now?: () => number;
  /** The timers of the parse deadline (default: Node's), so a test moves time instead of waiting for it. */
  clock?: Clock;
  /**
   * True while `volley drain` has this node's intake stopped: its last events
   * are being handed over (closed, shipped) and the node is then retired, so a
   * report is refused with 451 and its sender sends it again, to another MX.
   */
  draining?: () => boolean;
  /**
   * Test hook: the report parser (default: parseReport in the report thread),
   * so a test can see when parses run. It must stop and let go of `raw` when
   * `stop` aborts (the parse's deadline passed).
   */
  parse?: (raw: Buffer, limits: ReportLimits, stop: AbortSignal) => Promise<ParsedReport>;
  /** The script the report thread runs: the bundle (default: this file, which is dist/volley.js once bundled). */
  reportThreadScript?: string;
}

export interface InboundListener {
  readonly port: number;
  close(): Promise<void>;
}

/** Sessions at once: reports come from a few mailer daemons, not a crowd. */
const MAX_CONNECTIONS = 200;
const MAX_RECIPIENTS = 100;
const SOCKET_TIMEOUT_MS = 5 * 60_000;
/**
 * Reports parsed at once, in the one report thread (report-thread.ts): two
 * at once would only add up their memory (mailparser holds a report several
 * times over, see report.ts) on a path where throughput does not matter. The
 * others wait whole, at most max_message_size each.
 */
const PARSE_CONCURRENCY = 1;
/**
 * A parse past this is given up and stopped (its thread terminated,
 * report-thread.ts): mailparser has had parses that never settle
 * (nodemailer/mailparser #224, #263) or take minutes (RFC 2231 parameter
 * continuations), and with one parse at a time one such report would hold
 * every later one on the node until a restart. A
 * 10 MB report (max_message_size's usual bound) parses in about 1 s here, so
 * 30 s is far past any honest parse yet well within a sender's DATA timeout
 * (RFC 5321 4.5.3.2.6: 10 minutes), even for a few reports queued behind it.
 */
const PARSE_DEADLINE_MS = 30_000;
/** Reports whose parse killed the thread once, remembered (by digest) to keep rather than refuse them the second time. */
const THREAD_DEATHS_REMEMBERED = 1_000;

export async function startInboundListener(config: InboundConfig, deps: InboundDeps): Promise<InboundListener> {
  const logger = deps.logger.child({ component: 'inbound' });
  const now = deps.now ?? Date.now;
  const verp = config.verp && deps.verpSecret ? new Verp(config.verp, deps.verpSecret) : undefined;
  if (config.verp && !deps.verpSecret) logger.warn('inbound: inbound.verp is set but no VERP key was given: VERP tokens are not read, reports match by header only');
  const classifier = new BounceClassifier(deps.bounceRules ?? []);
  const unmatched = new UnmatchedStore(join(deps.persistentPath, 'inbound', 'unmatched'), config.unmatchedMax, logger, now);
  await unmatched.init();
  const domains = new Set(config.domains);
  const hostname = deps.hostname ?? osHostname();
  const sessions = new Set<Socket>();
  const thread = deps.parse ? undefined : new ReportThread(deps.reportThreadScript ?? __filename);
  const parse = deps.parse ?? ((raw: Buffer, l: ReportLimits, stop: AbortSignal) => thread!.parse(raw, l, stop));
  const limits: ReportLimits = { maxRecipients: config.maxReportRecipients };
  const parses = new ParseQueue(PARSE_CONCURRENCY, (d) => inboundMetrics.parseWaiting.inc(d), deps.clock ?? systemClock);
  const threadDeaths = new SeenDigests(THREAD_DEATHS_REMEMBERED);
  /** The sessions with a report in take(), aborted when the session closes: a report still waiting is then dropped. */
  const pending = new Map<SessionInfo, AbortController>();

  /** Keeps the message whole in inbound/unmatched/, the envelope (which the message does not carry) in a trace field on top. */
  const keep = (s: SessionInfo, raw: Buffer): Promise<string> => {
    const trace = receivedHeader({ helo: s.helo, ip: s.remoteAddress, by: hostname, protocol: 'ESMTP', id: 'inbound', rcpt: s.rcptTo.join('>, <') });
    return unmatched.store(Buffer.concat([Buffer.from(`Return-Path: <${s.mailFrom ?? ''}>\r\n${trace}`, 'latin1'), raw]));
  };

  /** Keeps `raw` in inbound/unmatched/ and returns its file, or the 451 that makes the sender retry when it cannot be kept. */
  const keepOrRefuse = async (s: SessionInfo, raw: Buffer, fields: Record<string, unknown>, what: string): Promise<string | Reply> => {
    try {
      return await keep(s, raw);
    } catch (err) {
      inboundMetrics.refused.inc({ reason: 'write-failed' });
      logger.error({ err, ...fields }, `inbound: could not keep ${what}; the sender will retry`);
      return reply(451, '4.3.0', 'local error in processing, try again later');
    }
  };

  const take = async (s: SessionInfo, raw: Buffer): Promise<Reply> => {
    const closed = new AbortController();
    pending.set(s, closed);
    try {
      return await takeParsed(s, raw, closed.signal);
    } finally {
      pending.delete(s);
    }
  };

  /** A report taken now would land after the drain's hand-over, in an event file (or unmatched/) nothing ships off a retired node. */
  const drainRefusal = (): Reply | undefined => {
    if (!deps.draining?.()) return undefined;
    inboundMetrics.refused.inc({ reason: 'draining' });
    return reply(451, '4.3.2', 'this node is being drained: try another MX');
  };

  const takeParsed = async (s: SessionInfo, raw: Buffer, closed: AbortSignal): Promise<Reply> => {
    let result: MatchResult;
    try {
      // A parse given up at its deadline is stopped, not left running with its memory.
      result = await parses.run(async (deadline) => matchReport(await parse(raw, limits, deadline), { envelopeRecipients: s.rcptTo, verp, nodeId: deps.nodeId, now, classify: (r) => classifier.classify(r) }), { deadlineMs: PARSE_DEADLINE_MS, signal: closed });
    } catch (err) {
      const code = errorCode(err);
      if (code === 'parse-dropped') {
        // Its sender never heard 250, so it sends again: nothing is lost, and
        // a report for no one is not held in memory (nor parsed) meanwhile.
        inboundMetrics.parseDropped.inc();
        logger.warn({ from: s.mailFrom, to: s.rcptTo, client: s.remoteAddress, size: raw.length }, 'inbound: the sender closed its session before its report was parsed: dropped, the sender will send it again');
        return reply(421, '4.4.2', 'session closed before the report was parsed');
      }
      if (code === 'parse-thread-failed' && !threadDeaths.again(raw)) {
        // The thread died under the report (out of memory, or stopped at shutdown): a local
        // failure, not a verdict on the report. Kept as unmatched with a 250, its events would
        // never be written; a 451 has its sender send it again. The same bytes killing the
        // thread a second time are a report that always will: kept (below) for an operator,
        // not refused for the sender's whole queue lifetime with a memory spike each try.
        inboundMetrics.refused.inc({ reason: 'parse-thread-failed' });
        logger.error({ err, from: s.mailFrom, client: s.remoteAddress, size: raw.length }, 'inbound: the report thread failed while parsing; the sender will retry');
        return reply(451, '4.3.0', 'local error in processing, try again later');
      }
      // A parser bug (or a hang, past the deadline) must cost one message its mapping, never the listener.
      result = code === 'parse-timeout' ? { ok: false, reason: 'parse-timeout', detail: `parsing gave up after ${PARSE_DEADLINE_MS} ms` } : { ok: false, reason: 'unparseable', detail: `parsing failed: ${(err as Error).message}` };
    }
    // Checked again after the parse: the drain may have begun meanwhile. Nothing is awaited from here to the write.
    const refused = drainRefusal();
    if (refused) return refused;
    if (result.ok) {
      setReportEventIds(raw, result.events);
      try {
        if (result.events.length > 0) await deps.events.write(result.events);
      } catch (err) {
        inboundMetrics.refused.inc({ reason: 'write-failed' });
        logger.error({ err, message_id: result.messageId }, 'inbound: could not write the report\'s events; the sender will retry');
        return reply(451, '4.3.0', 'local error in processing, try again later');
      }
      if (result.omitted > 0) {
        // Past the cap the report is mapped in part: what it says of the
        // others is kept for an operator, never dropped. Kept after the
        // events are durable; if keeping fails the sender retries and the
        // events come again with the same event_ids.
        const file = await keepOrRefuse(s, raw, { message_id: result.messageId }, 'a report past inbound.max_report_recipients');
        if (typeof file !== 'string') return file;
        inboundMetrics.truncated.inc();
        inboundMetrics.unmatched.inc({ reason: 'too-many-recipients' });
        logger.warn({ message_id: result.messageId, events: result.events.length, omitted: result.omitted, max_report_recipients: config.maxReportRecipients, file, from: s.mailFrom, client: s.remoteAddress, size: raw.length }, 'inbound: report names more recipients than inbound.max_report_recipients: the first made events, the rest none; the report is kept in inbound/unmatched/');
      }
      for (const e of result.events) inboundMetrics.reports.inc({ result: e.event });
      if (result.events.length === 0) inboundMetrics.reports.inc({ result: 'no-event' });
      logger.info({ message_id: result.messageId, matched_by: result.matchedBy, events: result.events.map((e) => `${e.event}:${e.recipient}`), from: s.mailFrom, client: s.remoteAddress }, 'inbound: report mapped');
      return reply(250, '2.0.0', `Ok: ${result.events.length} event(s) for ${result.messageId}${result.omitted > 0 ? `; ${result.omitted} more recipient(s) past the limit, kept` : ''}`);
    }
    const file = await keepOrRefuse(s, raw, { reason: result.reason }, 'an unmatched message');
    if (typeof file !== 'string') return file;
    inboundMetrics.reports.inc({ result: 'unmatched' });
    inboundMetrics.unmatched.inc({ reason: result.reason });
    logger.warn({ reason: result.reason, detail: result.detail, file, from: s.mailFrom, to: s.rcptTo, client: s.remoteAddress, size: raw.length }, 'inbound: message not mapped to any sent message: kept in inbound/unmatched/');
    return reply(250, '2.0.0', 'Ok: kept');
  };

  const handlers: SessionHandlers = {
    onConnect: () => undefined,
    onClose: (s) => pending.get(s)?.abort(),
    // Never advertised (no TLS, no insecure AUTH); answered all the same.
    onAuth: () => Promise.resolve(reply(503, '5.5.1', 'no authentication here')),
    // Mailer daemons send from <>; feedback loops from anywhere.
    onMailFrom: (_s, address) => drainRefusal() ?? (address === '' || isValidMailbox(address) ? undefined : reply(553, '5.1.7', `invalid sender address <${address}>`)),
    onRcptTo: (_s, address) => {
      const at = address.lastIndexOf('@');
      if (at < 1 || !domains.has(address.slice(at + 1).toLowerCase())) {
        inboundMetrics.refused.inc({ reason: 'relay' });
        return reply(550, '5.7.1', `<${address}>: relay access denied`);
      }
      return undefined;
    },
    onOversize: () => inboundMetrics.refused.inc({ reason: 'oversize' }),
    onData: (s, raw) => take(s, raw),
  };

  const server: Server = createServer((socket) => {
    if (sessions.size >= MAX_CONNECTIONS) {
      socket.on('error', () => undefined);
      endSocket(socket, 1000, '421 4.7.0 too many connections, try again later\r\n');
      return;
    }
    sessions.add(socket);
    socket.once('close', () => sessions.delete(socket));
    new SmtpSession(
      socket,
      {
        hostname,
        banner: 'Volley inbound',
        maxMessageSize: config.maxMessageSize,
        maxRecipients: MAX_RECIPIENTS,
        socketTimeoutMs: SOCKET_TIMEOUT_MS,
        implicitTls: false,
        allowStartTls: false,
        allowInsecureAuth: false,
        expectProxy: false,
        remoteAddress: socket.remoteAddress ?? '',
      },
      handlers,
    );
  });
  server.on('error', (err) => logger.warn({ err }, 'inbound: listener error'));
  await listen(server, config.port, config.address);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  logger.info({ address: config.address, port, domains: config.domains, verp: verp !== undefined }, 'inbound: listening for bounces and feedback reports');

  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => void (thread ? thread.close() : Promise.resolve()).finally(resolve));
        // A session mid-report has a moment to finish; its sender retries what it did not hear 250 for.
        const timer = setTimeout(() => {
          for (const s of sessions) s.destroy();
        }, 5_000);
        timer.unref();
        if (sessions.size === 0) clearTimeout(timer);
      }),
  };
}

/**
 * Names each event of a report by the report itself: a SHA-256 of its bytes
 * and of what the event says, as a UUID (version 8). A sender that did not
 * hear our 250 (a connection cut, a node killed after the write) sends the
 * same bytes again, perhaps to another node of the fleet; random ids would
 * make that a second bounce or complaint no sink could tell apart, these make
 * it the same event_id, which every receiver deduplicates on.
 */
export function setReportEventIds(raw: Buffer, events: NewEvent[]): void {
  const report = createHash('sha256').update(raw).digest('hex');
  events.forEach((e, i) => {
    const h = createHash('sha256').update(`volley-inbound-report-1\0${report}\0${i}\0${e.event}\0${e.message_id ?? ''}\0${e.recipient ?? ''}`).digest();
    h[6] = (h[6] & 0x0f) | 0x80;
    h[8] = (h[8] & 0x3f) | 0x80;
    const x = h.toString('hex', 0, 16);
    e.event_id = `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
  });
}
