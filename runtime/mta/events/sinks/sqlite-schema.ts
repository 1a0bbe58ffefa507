// The schema of an SQLite accounting file and how one event becomes one row.
// Readers (sidecars, `sqlite3`, dashboards) depend on these column names:
// change them only with a new `user_version`. README.md ("SQLite sink")
// documents the same schema.

import { createHash } from 'node:crypto';
import type { VolleyEvent } from '../types';

/** `PRAGMA user_version` of the files this code writes. */
export const SCHEMA_VERSION = 1;

/** The indexed columns, in row order after `event_id`. */
const INDEXED = [
  'time',
  'kind',
  'status',
  'message_id',
  'recipient',
  'domain',
  'vmta',
  'sending_ip',
  'mx_host',
  'smtp_code',
  'enhanced_code',
  'bounce_category',
  'tenant',
  'campaign',
] as const;

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL UNIQUE,
  time TEXT NOT NULL,
  kind TEXT NOT NULL,
  status TEXT,
  message_id TEXT,
  recipient TEXT,
  domain TEXT,
  vmta TEXT,
  sending_ip TEXT,
  mx_host TEXT,
  smtp_code INTEGER,
  enhanced_code TEXT,
  bounce_category TEXT,
  tenant TEXT,
  campaign TEXT,
  node TEXT,
  metadata TEXT,
  json TEXT NOT NULL
);
PRAGMA user_version = ${SCHEMA_VERSION};
`;

/**
 * The reader's indexes, created when a file is closed, not when it is opened:
 * an open file carries only the UNIQUE event_id index INSERT OR IGNORE needs,
 * because 14 more indexes cost each row ~14 B-tree inserts on the primary's
 * event loop (~30 µs a row, the events' largest cost per message). Built at
 * the close, each index is one sort of the file's rows. Only closed files are
 * read (a sidecar, the S3 shipper), and every closed file has them all.
 * IF NOT EXISTS: a file written by an older build already has them.
 */
export const INDEX_SQL = INDEXED.map((c) => `CREATE INDEX IF NOT EXISTS events_${c} ON events(${c});`).join('\n');

/**
 * INSERT OR IGNORE: a batch delivered again (the sink crashed after its commit
 * but before the dispatcher saved its cursor) finds its event ids already
 * there and adds nothing.
 */
export const INSERT_SQL = `INSERT OR IGNORE INTO events
  (event_id, ${INDEXED.join(', ')}, node, metadata, json)
  VALUES (${Array(INDEXED.length + 4).fill('?').join(', ')})`;

type Cell = string | number | null;

/**
 * The row for one event and its log line. Missing fields are NULL, never a
 * guess, except two that every row must have: an event without an `event_id`
 * (the log always gives one; this is a guard, not a path) gets the hash of
 * its line, which is the same on every redelivery, so deduplication still
 * holds; and `domain` of a report event (bounce, complaint), which carries
 * only the recipient, is the recipient's domain so `WHERE domain = …` finds
 * every kind.
 */
export function eventRow(event: VolleyEvent, line: string): Cell[] {
  const e = event as unknown as Record<string, unknown>;
  const metadata = isStringRecord(e.metadata) ? e.metadata : undefined;
  const eventId = str(e.event_id) ?? `sha256:${createHash('sha256').update(line).digest('hex')}`;
  const recipient = str(e.recipient);
  const domain = str(e.domain) ?? (recipient?.includes('@') ? recipient.slice(recipient.lastIndexOf('@') + 1).toLowerCase() : null);
  return [
    eventId,
    str(e.time) ?? '',
    str(e.event) ?? '',
    str(e.status),
    str(e.message_id),
    recipient,
    domain,
    str(e.vmta),
    str(e.sending_ip),
    str(e.mx_host),
    typeof e.smtp_code === 'number' && Number.isInteger(e.smtp_code) ? e.smtp_code : null,
    str(e.enhanced_code),
    str(e.bounce_category),
    metadata?.tenant ?? null,
    metadata?.campaign ?? null,
    str(e.node),
    metadata ? JSON.stringify(metadata) : null,
    line,
  ];
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}
