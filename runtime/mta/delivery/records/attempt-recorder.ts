import type { Logger } from 'pino';
import type { VolleyConfig } from '../../../shared/config/types';
import type { RecipientResult, SessionInfo, Source, TlsOutcome } from '../../../shared/smtp/connector';
import type { SpoolPartition } from '../../spool/partition';
import { expiresAt, type Envelope, type SpoolEntry } from '../../spool/types';
import type { EventLog } from '../../events/event-log';
import type { NewEvent } from '../../events/types';
import { BounceClassifier } from './bounce-category';
import { buildDsn } from './dsn';
import { errorCode } from '../../../shared/errors';
import type { Clock } from '../../../shared/clock';
import { PROXY_LINK_CODE } from '../connect/proxy-connector';

/** A delivery event before the log gives it its id. */
type NewDeliveryEvent = Extract<NewEvent, { event: 'delivery' }>;

/** One message's current attempt: its recipients split into per-domain jobs. */
export interface Attempt {
  entry: SpoolEntry;
  partition: SpoolPartition;
  /** Jobs not yet recorded. */
  pending: number;
  finished: string[];
  deferred: string[];
  /** Recipients not tried because the engine stopped: no event, still pending in the spool. */
  abandoned?: string[];
  events: NewDeliveryEvent[];
  envelope?: Envelope;
  dkimDomain?: string;
}

/** The recipients of one attempt that share a domain: delivered in one transaction. */
export interface Job {
  attempt: Attempt;
  domain: string;
  rcpts: string[];
  /** The MAIL FROM when it is not the message's sender: a VERP return path (then `rcpts` is one recipient). */
  mailFrom?: string;
}

/** What the recorder needs to know of the connection a job went over. */
export interface JobContext {
  source: Source & { pool?: string };
  session?: { info: SessionInfo };
  transactionMs: number;
  errorKind?: string;
  /** A session that could not be opened for its TLS requirement: what it reached (SessionInfo.tls otherwise). */
  tls?: TlsOutcome;
}

export interface RecorderOptions {
  config: VolleyConfig;
  attemptLog: EventLog;
  logger: Logger;
  nodeId: string;
  /** Event times, retry times and the wait before an unrecorded outcome is written again. */
  clock: Clock;
  /** Queues a bounce (DSN) like any other message; needed only with delivery.dsn. */
  bounce?: (dsn: { from: string; to: string[]; message: Buffer }) => Promise<unknown>;
  /** The attempt's outcome is durable: `next` is its retry time, undefined when the message is done. */
  settled: (entry: SpoolEntry, partition: SpoolPartition, next: number | undefined) => void;
  /**
   * An outcome of `partition` could not be recorded and is held in memory
   * (`held` true), or has now been recorded (false). One call each way per
   * attempt; the engine starts no delivery from a partition holding one.
   */
  unrecorded?: (partition: SpoolPartition, held: boolean) => void;
  /** How long a held outcome waits before its record is written again (default 1 s). */
  retryMs?: number;
  /** How soon an attempt deferred only by the proxy link is retried (default PROXY_LINK_RETRY_MS). */
  proxyLinkRetryMs?: number;
}

/** error_kind of a deferral whose cause was the MTA<->proxy link, not an answer about the MX. */
export const PROXY_LINK_ERROR_KIND = 'proxy-link';

/** error_kind of a failure kept queued because its DSN could not be queued. */
export const DSN_UNQUEUED_ERROR_KIND = 'dsn-unqueued';

/**
 * How soon an attempt deferred only because the link to its proxy failed is
 * tried again, instead of delivery.retry's slot (minutes): the MX said
 * nothing, so there is nothing to back off from. 5 s is the control link's
 * redial ceiling (CONTROL_BACKOFF_MAX_MS): a proxy back, or another proxy
 * holding the IP, is used by then. While the proxy stays away this does not
 * spin: its throttle keys answer "not now" once its control link is found
 * dead (10-15 s, heartbeat.ts), and the mail waits in memory, unrecorded.
 */
export const PROXY_LINK_RETRY_MS = 5_000;

/** "proxy-link" when `err` is a failure of the proxy link itself (ProxyConnectError, a link lost mid-transaction). */
export function linkErrorKind(err: unknown): string | undefined {
  return errorCode(err) === PROXY_LINK_CODE ? PROXY_LINK_ERROR_KIND : undefined;
}

/**
 * Turns SMTP results into attempt-log events and makes each attempt's outcome
 * durable in the right order: the events first, then the spool record that
 * ends or reschedules the message. A crash in between repeats an event, never
 * loses one.
 */
export class AttemptRecorder {
  private config: VolleyConfig;
  private classifier: BounceClassifier;
  private stopping = false;
  /** Held outcomes waiting to try their write again; each function ends the wait now. */
  private readonly waits = new Set<() => void>();

  constructor(private readonly options: RecorderOptions) {
    this.config = options.config;
    this.classifier = new BounceClassifier(options.config.bounceRules);
  }

  apply(config: VolleyConfig): void {
    this.classifier = new BounceClassifier(config.bounceRules);
    this.config = config;
  }

  /** One job's results; the attempt completes when its last job is recorded. */
  record(job: Job, results: RecipientResult[], ctx: JobContext): void {
    const a = job.attempt;
    const now = this.options.clock.now();
    const time = new Date(now).toISOString();
    const info = ctx.session?.info;
    for (const r of results) {
      if (r.outcome === 'deferred') a.deferred.push(r.rcpt);
      else a.finished.push(r.rcpt);
      a.events.push({
        time,
        event: 'delivery',
        status: r.outcome,
        message_id: a.entry.id,
        attempt: a.entry.attempts + 1,
        sender: a.entry.from,
        recipient: r.rcpt,
        domain: job.domain,
        vmta: ctx.source.vmta,
        pool: ctx.source.pool,
        sending_ip: info?.localIp ?? ctx.source.ip,
        helo: ctx.source.helo,
        via: info?.via,
        mx_host: info?.mxHost,
        mx_ip: info?.mxIp,
        smtp_code: r.reply.code,
        enhanced_code: r.reply.enhanced,
        smtp_text: r.reply.text,
        error_kind: ctx.errorKind,
        bounce_category: r.outcome === 'delivered' ? undefined : this.classifier.classify(r.reply),
        tls_version: info?.tls?.version,
        tls_cipher: info?.tls?.cipher,
        tls_policy: (info?.tls ?? ctx.tls)?.policy,
        tls_verified: (info?.tls ?? ctx.tls)?.verified,
        tls_failure: (info?.tls ?? ctx.tls)?.failure,
        time_in_queue_ms: now - a.entry.received,
        connect_ms: info?.connectMs,
        transaction_ms: ctx.transactionMs,
        size: a.entry.size,
        dkim_domain: a.dkimDomain,
        node: this.options.nodeId,
        metadata: a.envelope?.meta,
      });
    }
    if (--a.pending === 0) void this.complete(a);
  }

  /** The engine is stopping and will not try this job: its recipients stay queued as they were. */
  abandon(job: Job): void {
    const a = job.attempt;
    (a.abandoned ??= []).push(...job.rcpts);
    if (--a.pending > 0) return;
    // Nothing of this attempt was tried: nothing to write, the spool already
    // says it all. It waits for its next turn as it was (due at once).
    if (a.events.length === 0) this.options.settled(a.entry, a.partition, a.entry.next);
    else void this.complete(a);
  }

  /**
   * The engine is stopping: held outcomes try their write once more, and
   * what still cannot be written is given up (and logged by id): those
   * messages stay queued and are sent again after the restart.
   */
  stop(): void {
    this.stopping = true;
    for (const wake of [...this.waits]) wake();
  }

  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        this.options.clock.clearTimeout(timer);
        this.waits.delete(wake);
        resolve();
      };
      const timer = this.options.clock.setTimeout(wake, ms);
      this.waits.add(wake);
    });
  }

  /** A message with no recipient left to try (nothing to deliver): done at once. */
  completeEmpty(a: Attempt): void {
    void this.complete(a);
  }

  /**
   * An operator's purge: a `purged` event per recipient, then the message
   * leaves the spool. A `purged` event and not a "failed" delivery: nothing
   * was tried, so counting it as a failed attempt would skew bounce rates and
   * make a sink that takes failures see the operator's act as the receiver's.
   */
  async purged(entry: SpoolEntry, partition: SpoolPartition): Promise<void> {
    const time = new Date(this.options.clock.now()).toISOString();
    await this.options.attemptLog.write(
      entry.to.map((rcpt) => ({
        time,
        event: 'purged' as const,
        message_id: entry.id,
        recipient: rcpt,
        domain: rcpt.slice(rcpt.lastIndexOf('@') + 1).toLowerCase(),
        sender: entry.from,
        attempt: entry.attempts,
        node: this.options.nodeId,
      })),
    );
    await partition.markDone({ id: entry.id, reason: 'purged' });
  }

  /** Makes the attempt's result durable: events first, then the spool record. */
  private async complete(a: Attempt): Promise<void> {
    const { entry, partition } = a;
    const now = this.options.clock.now();
    const attempts = entry.attempts + 1;
    let next: number | undefined;
    if (a.deferred.length > 0) {
      const wait = this.retryWait(attempts);
      // Deferred by the proxy link alone (every deferral of this attempt): retried soon.
      const linkOnly = a.events.every((e) => e.status !== 'deferred' || e.error_kind === PROXY_LINK_ERROR_KIND);
      next = now + (linkOnly ? Math.min(wait, this.options.proxyLinkRetryMs ?? PROXY_LINK_RETRY_MS) : wait);
      if (next > expiresAt(entry, this.config.delivery.maxLifetimeMs)) {
        // Past its lifetime: the deferral becomes the final, expired, result.
        next = undefined;
        for (const e of a.events) if (e.status === 'deferred') e.status = 'expired';
        a.finished.push(...a.deferred);
        a.deferred = [];
      } else {
        const at = new Date(next).toISOString();
        for (const e of a.events) if (e.status === 'deferred') e.next_retry = at;
      }
    }
    // The DSN is queued before anything of this attempt is recorded, and the
    // original leaves the spool (or loses its failed recipients) only once the
    // DSN is durable. When it cannot be queued (a full disk), the failures
    // stay pending: the message is kept, deferred, and the retry makes the
    // DSN again. A crash after the DSN and before the records repeats the
    // attempt and may send a second DSN, never none.
    if ((await this.sendDsn(a)) === 'unqueued') {
      const bounced = new Set<string>();
      next = now + this.retryWait(attempts);
      const at = new Date(next).toISOString();
      for (const e of a.events) {
        if (e.status !== 'failed' && e.status !== 'expired') continue;
        bounced.add(e.recipient);
        e.status = 'deferred';
        e.error_kind = DSN_UNQUEUED_ERROR_KIND;
      }
      a.finished = a.finished.filter((r) => !bounced.has(r));
      a.deferred.push(...bounced);
      for (const e of a.events) if (e.status === 'deferred') e.next_retry = at;
    }
    // Recipients left untried by a stop keep the message queued, due at once.
    if (next === undefined && a.abandoned?.length) next = now;
    // An outcome that cannot be written (a full disk) is held here, in
    // memory, and written again until it is: the message stays "in flight",
    // so it is never sent again while this process lives. Only a stop gives
    // up on it, and then it is sent again after the restart (logged by id).
    let eventsWritten = false;
    let held = false;
    for (;;) {
      try {
        if (!eventsWritten) await this.options.attemptLog.write(a.events);
        eventsWritten = true;
        if (next === undefined) {
          const statuses = new Set(a.events.map((e) => e.status));
          const reason = statuses.has('expired') ? 'expired' : statuses.has('delivered') ? 'delivered' : 'failed';
          await partition.markDone({ id: entry.id, reason });
        } else {
          await partition.updateState({ id: entry.id, next, attempts, finished: a.finished });
        }
        break;
      } catch (err) {
        // No longer queued here (purged, drained away, done by another path):
        // there is no record left to write, ever. The events say what happened;
        // retrying would hold this partition's later results behind it for good.
        if (eventsWritten && errorCode(err) === 'ENOTQUEUED') {
          this.options.logger.warn({ id: entry.id, partition: partition.dir }, 'delivery: the attempt is in the attempt log, but its message is no longer queued here (removed by another path meanwhile): nothing left to record in the spool');
          next = undefined;
          break;
        }
        if (!held) {
          held = true;
          this.options.logger.error(
            { err, id: entry.id, partition: partition.dir },
            'delivery: could not record the attempt; its outcome is held in memory (sent, unrecorded) and written again until it is; the partition starts no delivery meanwhile',
          );
          this.options.unrecorded?.(partition, true);
        }
        if (this.stopping) {
          this.options.logger.error({ id: entry.id, partition: partition.dir }, 'delivery: stopping with an attempt unrecorded: the message stays queued and is sent again after the restart');
          next = entry.next;
          break;
        }
        await this.wait(this.options.retryMs ?? 1000);
      }
    }
    if (held) {
      this.options.unrecorded?.(partition, false);
      if (!this.stopping) this.options.logger.info({ id: entry.id, partition: partition.dir }, 'delivery: a held attempt is recorded');
    }
    this.options.settled(entry, partition, next);
  }

  /** How long the `attempts`-th attempt's deferral waits (delivery.retry, its last step repeated). */
  private retryWait(attempts: number): number {
    const schedule = this.config.delivery.retryMs;
    return schedule[Math.min(attempts - 1, schedule.length - 1)];
  }

  /**
   * A DSN to the return path for what finally failed (never for bounces
   * themselves). 'unqueued' when the bounce queue refused it: the caller keeps
   * the original. A DSN that cannot be built (a bug, not a full disk) is
   * logged and not owed: retrying would fail the same way forever.
   */
  private async sendDsn(a: Attempt): Promise<'none' | 'queued' | 'unqueued'> {
    if (!this.config.delivery.dsn || !this.options.bounce || a.entry.from === '') return 'none';
    const finals = a.events.filter((e) => e.status === 'failed' || e.status === 'expired');
    if (finals.length === 0) return 'none';
    let message: Buffer;
    try {
      const original = a.envelope ? await a.partition.read(a.entry).then((m) => m.body, () => Buffer.alloc(0)) : Buffer.alloc(0);
      message = buildDsn({
        reportingMta: this.config.hostname,
        originalFrom: a.entry.from,
        messageId: a.entry.id,
        originalMessage: original,
        arrival: new Date(a.entry.received),
        failures: finals.map((e) => ({
          rcpt: e.recipient,
          reply: { code: e.smtp_code ?? 0, enhanced: e.enhanced_code, text: e.smtp_text ?? '' },
          expired: e.status === 'expired',
        })),
      });
    } catch (err) {
      this.options.logger.error({ err, id: a.entry.id }, 'delivery: could not build a DSN; none is sent');
      return 'none';
    }
    try {
      await this.options.bounce({ from: '', to: [a.entry.from], message });
      return 'queued';
    } catch (err) {
      this.options.logger.error({ err, id: a.entry.id }, 'delivery: could not queue a DSN; the message stays queued, deferred, and its failures are retried with their DSN');
      return 'unqueued';
    }
  }
}
