// What an event is, and what a sink promises. Every event is one JSON line in
// the node's event log (`<persistent>/log/events/`); its field names are
// stable because receivers, SQLite readers and dashboards depend on them.

export type EventKind = 'delivery' | 'bounce' | 'complaint' | 'unsubscribe' | 'purged';
export const EVENT_KINDS: readonly EventKind[] = ['delivery', 'bounce', 'complaint', 'unsubscribe', 'purged'];

/** Fields every event has. */
interface EventCommon {
  /** Unique across the fleet and the same on every retry of its delivery to a sink (assigned when it is written). */
  event_id: string;
  /** ISO 8601, when it happened. */
  time: string;
  /** The node that wrote it. */
  node?: string;
  message_id?: string;
  recipient?: string;
  domain?: string;
  /** Tenant, campaign and the like: `X-Volley-Meta-*` headers / the HTTP API's metadata. */
  metadata?: Record<string, string>;
}

/** One recipient's delivery attempt (the attempt-log line). */
export interface DeliveryEvent extends EventCommon {
  event: 'delivery';
  status: 'delivered' | 'deferred' | 'failed' | 'expired';
  message_id: string;
  injection_id?: string;
  attempt: number;
  sender: string;
  recipient: string;
  domain: string;
  vmta?: string;
  pool?: string;
  sending_ip?: string;
  helo?: string;
  via?: string;
  mx_host?: string;
  mx_ip?: string;
  smtp_code?: number;
  enhanced_code?: string;
  smtp_text?: string;
  error_kind?: string;
  bounce_category?: string;
  tls_version?: string;
  tls_cipher?: string;
  /** Which rule decided the TLS requirement (TlsPolicySource), whether its check passed, and why not (RFC 8460 result type). */
  tls_policy?: string;
  tls_verified?: boolean;
  tls_failure?: string;
  time_in_queue_ms: number;
  connect_ms?: number;
  transaction_ms?: number;
  next_retry?: string;
  size: number;
  dkim_domain?: string;
}

/** How an inbound report was tied to the message it is about. */
export type MatchedBy = 'verp' | 'header' | 'recipient';

/** An asynchronous bounce: one recipient of an RFC 3464 DSN that came back later. */
export interface BounceEvent extends EventCommon {
  event: 'bounce';
  /** The DSN's Action: `failed` (a hard bounce) or `delayed`. */
  status: 'failed' | 'delayed';
  message_id: string;
  recipient: string;
  matched_by: MatchedBy;
  enhanced_code?: string;
  smtp_code?: number;
  /** Diagnostic-Code text. */
  smtp_text?: string;
  bounce_category?: string;
  reporting_mta?: string;
  remote_mta?: string;
}

/** A feedback-loop complaint: an RFC 5965 ARF report (Feedback-Type abuse, fraud, virus, other). */
export interface ComplaintEvent extends EventCommon {
  event: 'complaint';
  message_id: string;
  recipient: string;
  matched_by: MatchedBy;
  feedback_type: string;
  user_agent?: string;
  source_ip?: string;
  reported_by?: string;
}

/** An ARF `Feedback-Type: unsubscribe`, or mail to a List-Unsubscribe address. */
export interface UnsubscribeEvent extends EventCommon {
  event: 'unsubscribe';
  message_id: string;
  recipient: string;
  matched_by: MatchedBy;
  reported_by?: string;
}

/** A recipient removed from the queue by an operator (admin purge), never delivered. */
export interface PurgedEvent extends EventCommon {
  event: 'purged';
  message_id: string;
  recipient: string;
  sender?: string;
  attempt?: number;
}

export type VolleyEvent = DeliveryEvent | BounceEvent | ComplaintEvent | UnsubscribeEvent | PurgedEvent;

/** An event before the log gives it its id. */
export type NewEvent = VolleyEvent extends infer E ? (E extends VolleyEvent ? Omit<E, 'event_id'> & { event_id?: string } : never) : never;

/** Which events a sink takes. Every listed criterion must match; an absent one matches all. */
export interface EventFilter {
  kinds?: EventKind[];
  /** Matched against `status` (delivery, bounce); events without a status pass. */
  statuses?: string[];
  /** Metadata key -> accepted values; an event lacking the key does not match. */
  metadata?: Record<string, string[]>;
}

/** A run of events in log order, handed to a sink as one unit. */
export interface SinkBatch {
  events: readonly VolleyEvent[];
  /** Each event's JSON line as written in the log (no newline): what a sink sends without serialising again. */
  lines: readonly string[];
}

export interface SinkStats {
  /** Batches accepted by the receiver, and events in them. */
  delivered: number;
  deliveredEvents: number;
  retries: number;
  /** Batches given up on (max_age passed, or refused with a 4xx) and written to the dead-letter file. */
  deadLettered: number;
  lastSuccess?: string;
  lastError?: string;
}

/**
 * A batch sink (webhook, sqlite). The dispatcher reads the event log from the
 * sink's durable cursor, filters, cuts batches of at most `batchSize` and calls
 * `deliver` with up to `concurrency` batches in flight; it moves the cursor
 * past a batch only once `deliver` has resolved for it and every batch before it.
 */
export interface EventSink {
  readonly name: string;
  readonly batchSize: number;
  /** Longest an available event waits for more to join its batch (ms). */
  readonly maxWaitMs: number;
  readonly concurrency: number;
  /**
   * Hold what is ready up to maxWaitMs for the batch to fill (a local file
   * sink: each batch is a commit and an fsync, and nobody reads its rows
   * before the file rotates). Absent or false: what is ready is sent at once
   * (the webhook's rule: a receiver waits for no batch to fill).
   */
  readonly fillBatches?: boolean;
  /**
   * Resolves when the batch is acknowledged by the receiver, or dead-lettered
   * (never silently dropped). Retries internally until then. Rejects only when
   * the sink is closed: the batch is then read again after a restart.
   */
  deliver(batch: SinkBatch): Promise<void>;
  /** Stops retrying; batches in flight reject. */
  close(): Promise<void>;
  stats(): SinkStats;
  /**
   * `volley drain`, once the sink holds every event: close what is open now
   * (a file sink's current file) so the s3 shipper can take the node's last
   * rows before the node is stopped. True when it closed a file.
   */
  handOver?(): boolean;
  /**
   * A config refresh (SIGHUP, `volley config sync` after a rotated webhook
   * secret): the keys every later request is signed with, retries of a batch
   * already sent included. The webhook sink has it; the caller read the keys.
   */
  setSigningKeys?(keys: readonly Buffer[]): void;
}

/** What every sink is given besides its own config. */
export interface SinkDeps {
  /** The node's persistent path: dead-letter files and default directories live under it. */
  persistentPath: string;
  nodeId: string;
  logger: import('pino').Logger;
  /** Injected for tests (fake timers); default Date.now. */
  now?: () => number;
}

/**
 * Closed files offered to the S3 shipper: the event log's, and each SQLite
 * sink's. A source keeps a file until it says it can go: the shipper calls
 * `shipped` once S3 confirmed it, and the source deletes it when nothing else
 * still needs it (unless the s3 sink's keep_local says to keep it).
 */
export interface ShipSource {
  /** The `<kind>` in `s3://bucket/prefix/<env>/<node>/<kind>/yyyy/mm/dd/<file>`: `events` or `sqlite`. */
  readonly kind: 'events' | 'sqlite';
  /** Closed files (absolute paths) not yet shipped, oldest first: never written again. */
  closedFiles(): Promise<string[]>;
  /** S3 holds `file` (checksum verified). */
  shipped(file: string, keepLocal: boolean): Promise<void>;
}

/** Writes events to the node's event log; resolves once they are durable. */
export interface EventWriter {
  write(events: readonly NewEvent[]): Promise<void>;
}
