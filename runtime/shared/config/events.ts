// The `events` and `inbound` sections of the MTA config: their schema, their
// normalised types with defaults, and the checks the schema cannot express.
// Kept apart from load.ts because they are a product of their own (sinks,
// reports) and load.ts is long enough.

import { isIP } from 'node:net';
import { parseDuration, parseSize } from '../units';

type Dur = string | number;
type Path = (string | number)[];
export type Report = (path: Path, message: string) => void;

const duration = { type: ['string', 'integer'], description: 'e.g. 250ms, 30s, 5m, 2h, 4d' };
const size = { type: ['string', 'integer'], description: 'e.g. 512KB, 25MB' };
const name = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' };
const domain = { type: 'string', minLength: 1, maxLength: 253 };
export const EVENT_KIND_NAMES = ['delivery', 'bounce', 'complaint', 'unsubscribe', 'purged'] as const;
export type EventKindName = (typeof EVENT_KIND_NAMES)[number];

const filter = {
  type: 'object',
  additionalProperties: false,
  description: 'which events this sink takes; every criterion given must match',
  properties: {
    kinds: { type: 'array', minItems: 1, items: { enum: EVENT_KIND_NAMES } },
    statuses: { type: 'array', minItems: 1, items: { type: 'string' }, description: 'delivered, deferred, failed, expired (delivery); failed, delayed (bounce)' },
    metadata: {
      type: 'object',
      description: 'metadata key -> a value or a list of values, e.g. tenant: [a, b]',
      additionalProperties: { oneOf: [{ type: 'string' }, { type: 'array', minItems: 1, items: { type: 'string' } }] },
    },
  },
};

const common = { name, filter };

const webhookSink = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'type', 'url', 'secret_files'],
  properties: {
    ...common,
    type: { const: 'webhook' },
    url: { type: 'string', pattern: '^https?://', description: 'https:// (http:// only for a receiver on loopback)' },
    secret_files: {
      type: 'array',
      minItems: 1,
      items: { type: 'string' },
      description: 'files each holding a Standard Webhooks secret (whsec_<base64>); every one signs, so a new secret can be added before the old is removed',
    },
    batch_size: { type: 'integer', minimum: 1, maximum: 10000 },
    max_wait: { ...duration, description: 'how long an event waits for others to join its batch (default 1s); what is ready is sent without waiting to fill it' },
    concurrency: { type: 'integer', minimum: 1, maximum: 64 },
    gzip: { type: 'boolean' },
    timeout: duration,
    max_age: { ...duration, description: 'retry a batch this long, then dead-letter it (default: forever)' },
    ca_file: { type: 'string', description: 'PEM bundle trusted for the receiver (default: the system CAs)' },
    headers: { type: 'object', additionalProperties: { type: 'string' } },
  },
};

const sqliteSink = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'type'],
  properties: {
    ...common,
    type: { const: 'sqlite' },
    dir: { type: 'string', description: 'default <persistent>/events/sqlite/<name>' },
    max_size: { ...size, description: 'rotate a file at this size (default 256MB)' },
    max_age: { ...duration, description: 'rotate a file this old (default 1h)' },
  },
};

const s3Sink = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'type', 'bucket'],
  properties: {
    name,
    type: { const: 's3' },
    bucket: { type: 'string', minLength: 3 },
    prefix: { type: 'string' },
    region: { type: 'string' },
    endpoint: { type: 'string', description: 'an S3-compatible endpoint instead of AWS (path-style requests)' },
    gzip: { type: 'boolean' },
    keep_local: { type: 'boolean' },
    ship: { type: 'array', minItems: 1, items: { enum: ['events', 'sqlite'] }, description: 'closed event-log files, closed SQLite files (default both)' },
    interval: { ...duration, description: 'how often closed files are looked for (default 30s)' },
  },
};

export const eventsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    attempt_log: {
      type: 'object',
      additionalProperties: false,
      properties: {
        max_size: size,
        max_age: duration,
        commit_interval: { ...duration, description: 'events collect this long before one synced write (default 10ms, at most 1s; 0 = the next event-loop turn); read at start' },
      },
    },
    max_queue: { ...size, description: 'event-log bytes a sink may leave unread; past it its oldest unread files are skipped, loudly (default 2GB)' },
    sinks: { type: 'array', items: { oneOf: [webhookSink, sqliteSink, s3Sink] } },
  },
};

export const inboundSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['domains'],
  description: 'an SMTP listener for DSNs and ARF reports addressed to our own bounce domains',
  properties: {
    address: { type: 'string', description: 'default 0.0.0.0' },
    port: { type: 'integer', minimum: 0, maximum: 65535 },
    domains: { type: 'array', minItems: 1, items: domain },
    max_message_size: size,
    unmatched_max: { ...size, description: 'bytes kept in inbound/unmatched/ (default 256MB); past it the oldest go, with a log line' },
    max_report_recipients: { type: 'integer', minimum: 1, maximum: 1_000_000, description: 'recipient groups of a DSN (Original-Rcpt-To of an ARF report) turned into events, default 1000; past it the report is also kept in inbound/unmatched/' },
    verp: {
      type: 'object',
      additionalProperties: false,
      required: ['domain', 'secret_file'],
      description: 'MAIL FROM <prefix>+<token>@<domain>, the token naming message and recipient under an HMAC',
      properties: {
        domain,
        prefix: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,32}$' },
        secret_file: { type: 'string', description: 'the HMAC key (>= 32 bytes)' },
        pools: { type: 'array', items: { type: 'string' }, description: 'pools that use VERP (default: every pool)' },
      },
    },
  },
};

export interface FilterConfig {
  kinds?: EventKindName[];
  statuses?: string[];
  metadata?: Record<string, string[]>;
}

export interface WebhookSinkConfig {
  type: 'webhook';
  name: string;
  filter?: FilterConfig;
  url: string;
  secretFiles: string[];
  batchSize: number;
  maxWaitMs: number;
  concurrency: number;
  gzip: boolean;
  timeoutMs: number;
  /** Undefined: retry forever. */
  maxAgeMs?: number;
  caFile?: string;
  headers: Record<string, string>;
}

export interface SqliteSinkConfig {
  type: 'sqlite';
  name: string;
  filter?: FilterConfig;
  /** Undefined: `<persistent>/events/sqlite/<name>`. */
  dir?: string;
  maxSize: number;
  maxAgeMs: number;
}

export interface S3SinkConfig {
  type: 's3';
  name: string;
  bucket: string;
  prefix: string;
  region?: string;
  endpoint?: string;
  gzip: boolean;
  keepLocal: boolean;
  ship: ('events' | 'sqlite')[];
  intervalMs: number;
}

export type SinkConfig = WebhookSinkConfig | SqliteSinkConfig | S3SinkConfig;

export interface EventsConfig {
  attemptLog: { maxSize: number; maxAgeMs: number; commitIntervalMs: number };
  maxQueue: number;
  sinks: SinkConfig[];
}

export interface InboundConfig {
  address: string;
  port: number;
  domains: string[];
  maxMessageSize: number;
  unmatchedMax: number;
  /** Recipients of one report read and turned into events; the rest are counted and the report kept in inbound/unmatched/. */
  maxReportRecipients: number;
  verp?: { domain: string; prefix: string; secretFile: string; pools?: string[] };
}

type RawFilter = { kinds?: EventKindName[]; statuses?: string[]; metadata?: Record<string, string | string[]> };
type RawSink =
  | { type: 'webhook'; name: string; filter?: RawFilter; url: string; secret_files: string[]; batch_size?: number; max_wait?: Dur; concurrency?: number; gzip?: boolean; timeout?: Dur; max_age?: Dur; ca_file?: string; headers?: Record<string, string> }
  | { type: 'sqlite'; name: string; filter?: RawFilter; dir?: string; max_size?: Dur; max_age?: Dur }
  | { type: 's3'; name: string; bucket: string; prefix?: string; region?: string; endpoint?: string; gzip?: boolean; keep_local?: boolean; ship?: ('events' | 'sqlite')[]; interval?: Dur };
export interface RawEvents {
  attempt_log?: { max_size?: Dur; max_age?: Dur; commit_interval?: Dur };
  max_queue?: Dur;
  sinks?: RawSink[];
}
export interface RawInbound {
  address?: string;
  port?: number;
  domains: string[];
  max_message_size?: Dur;
  unmatched_max?: Dur;
  max_report_recipients?: number;
  verp?: { domain: string; prefix?: string; secret_file: string; pools?: string[] };
}

/** A size or duration reader that reports a bad value at its path and falls back to the default. */
export function converter(report: Report, parse: (v: Dur) => number) {
  return (v: Dur | undefined, dflt: number, path: Path): number => {
    if (v === undefined) return dflt;
    try {
      return parse(v);
    } catch (err) {
      report(path, (err as Error).message);
      return dflt;
    }
  };
}

function normaliseFilter(f: RawFilter | undefined): FilterConfig | undefined {
  if (!f) return undefined;
  const metadata = f.metadata && Object.fromEntries(Object.entries(f.metadata).map(([k, v]) => [k, Array.isArray(v) ? v : [v]]));
  return { kinds: f.kinds, statuses: f.statuses, metadata };
}

export function normaliseEvents(raw: RawEvents | undefined, report: Report): EventsConfig {
  const dur = converter(report, parseDuration);
  const sz = converter(report, parseSize);
  // Results wait this long before they are durable: beyond a second it only
  // widens what a crash sends twice.
  const commitPath: Path = ['events', 'attempt_log', 'commit_interval'];
  const commitIntervalMs = dur(raw?.attempt_log?.commit_interval, 10, commitPath);
  if (commitIntervalMs < 0) report(commitPath, 'must not be negative');
  else if (commitIntervalMs > 1000) report(commitPath, `${commitIntervalMs} ms is too long: at most 1s`);

  const sinks = (raw?.sinks ?? []).map((s, i): SinkConfig => {
    const path: Path = ['events', 'sinks', i];
    if (s.type === 'webhook') {
      const url = safeUrl(s.url);
      if (!url) report([...path, 'url'], `"${s.url}" is not a URL`);
      else if (url.protocol === 'http:' && !isLoopback(url.hostname)) report([...path, 'url'], 'http:// only for a receiver on loopback: events carry recipients, use https://');
      return {
        type: 'webhook',
        name: s.name,
        filter: normaliseFilter(s.filter),
        url: s.url,
        secretFiles: s.secret_files,
        batchSize: s.batch_size ?? 500,
        maxWaitMs: dur(s.max_wait, 1000, [...path, 'max_wait']),
        concurrency: s.concurrency ?? 4,
        gzip: s.gzip ?? false,
        timeoutMs: dur(s.timeout, 30_000, [...path, 'timeout']),
        maxAgeMs: s.max_age === undefined ? undefined : dur(s.max_age, 0, [...path, 'max_age']),
        caFile: s.ca_file,
        headers: s.headers ?? {},
      };
    }
    if (s.type === 'sqlite') {
      return {
        type: 'sqlite',
        name: s.name,
        filter: normaliseFilter(s.filter),
        dir: s.dir,
        maxSize: sz(s.max_size, 256 * 1024 * 1024, [...path, 'max_size']),
        maxAgeMs: dur(s.max_age, 3_600_000, [...path, 'max_age']),
      };
    }
    return {
      type: 's3',
      name: s.name,
      bucket: s.bucket,
      prefix: (s.prefix ?? '').replace(/^\/+|\/+$/g, ''),
      region: s.region,
      endpoint: s.endpoint,
      gzip: s.gzip ?? true,
      keepLocal: s.keep_local ?? false,
      ship: s.ship ?? ['events', 'sqlite'],
      intervalMs: dur(s.interval, 30_000, [...path, 'interval']),
    };
  });
  const seen = new Set<string>();
  sinks.forEach((s, i) => {
    if (seen.has(s.name)) report(['events', 'sinks', i, 'name'], `duplicate sink name "${s.name}"`);
    seen.add(s.name);
  });
  if (sinks.filter((s) => s.type === 's3').length > 1) report(['events', 'sinks'], 'at most one s3 sink: a closed file is shipped once');

  return {
    attemptLog: {
      maxSize: sz(raw?.attempt_log?.max_size, 100 * 1024 * 1024, ['events', 'attempt_log', 'max_size']),
      maxAgeMs: dur(raw?.attempt_log?.max_age, 3_600_000, ['events', 'attempt_log', 'max_age']),
      commitIntervalMs,
    },
    maxQueue: sz(raw?.max_queue, 2 * 1024 ** 3, ['events', 'max_queue']),
    sinks,
  };
}

export function normaliseInbound(raw: RawInbound | undefined, poolNames: ReadonlySet<string>, report: Report): InboundConfig | undefined {
  if (!raw) return undefined;
  const sz = converter(report, parseSize);
  const address = raw.address ?? '0.0.0.0';
  if (!isIP(address)) report(['inbound', 'address'], `"${address}" is not an IP address`);
  const verp = raw.verp && {
    domain: raw.verp.domain.toLowerCase(),
    prefix: raw.verp.prefix ?? 'bounce',
    secretFile: raw.verp.secret_file,
    pools: raw.verp.pools,
  };
  const domains = raw.domains.map((d) => d.toLowerCase());
  if (verp && !domains.includes(verp.domain)) report(['inbound', 'verp', 'domain'], `"${verp.domain}" is not one of inbound.domains: its bounces would be refused`);
  verp?.pools?.forEach((p, i) => poolNames.has(p) || report(['inbound', 'verp', 'pools', i], `no pool named "${p}"`));
  return {
    address,
    port: raw.port ?? 25,
    domains,
    maxMessageSize: sz(raw.max_message_size, 10 * 1024 * 1024, ['inbound', 'max_message_size']),
    unmatchedMax: sz(raw.unmatched_max, 256 * 1024 * 1024, ['inbound', 'unmatched_max']),
    // A mailer daemon reports on one message: even a list expansion rarely
    // names a thousand recipients, and a report naming 180,000 (9 MB) is an
    // attack on the primary's memory, not a bounce.
    maxReportRecipients: raw.max_report_recipients ?? 1000,
    verp,
  };
}

function safeUrl(s: string): URL | undefined {
  try {
    return new URL(s);
  } catch {
    return undefined;
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\./.test(host);
}
