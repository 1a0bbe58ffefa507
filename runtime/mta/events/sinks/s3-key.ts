// Where a shipped file lands in the bucket:
// `<prefix>/<env>/<node>/<kind>/<yyyy>/<mm>/<dd>/<file>[.gz]`, dated by the
// day (UTC) the file was started. Kept apart from the shipper so the scheme
// is one small function that the README, the IAM grant and the tests agree on.
import { basename } from 'node:path';
import { VolleyError } from '../../../shared/errors';

/**
 * When a closed file was started, from its name: the event log renames a
 * full file to `<producer>.<ISO start, ':' and '.' as '-'>.jsonl`
 * (`w0.2026-12-05T03-45-00-123Z.jsonl`); a compact `20261205T034500Z` is read
 * too. Undefined when the name carries no date: the caller falls back to the
 * file's mtime (when it was last written, so the day it was closed).
 */
export function startFromName(file: string): Date | undefined {
  const name = basename(file);
  const m = /(?<!\d)(\d{4})-?(\d{2})-?(\d{2})T(\d{2})[-:]?(\d{2})/.exec(name);
  if (!m) return undefined;
  const [year, month, day, hour, minute] = m.slice(1).map(Number);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59) return undefined;
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute));
  // Rejects 2026-02-31 and the like, which Date.UTC would roll into March.
  return date.getUTCDate() === day ? date : undefined;
}

/** One path segment of the key: S3 takes anything, but a `/` or an empty segment would move the file elsewhere. */
function segment(what: string, value: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(value)) throw new VolleyError('ES3KEY', `${what} "${value}" cannot be part of an S3 key (letters, digits, _ . - only)`);
  return value;
}

export interface KeyParts {
  readonly prefix: string;
  readonly env: string;
  readonly node: string;
  readonly kind: 'events' | 'sqlite';
  readonly file: string;
  readonly start: Date;
  readonly gzip: boolean;
}

export function objectKey(p: KeyParts): string {
  const yyyy = String(p.start.getUTCFullYear()).padStart(4, '0');
  const mm = String(p.start.getUTCMonth() + 1).padStart(2, '0');
  const dd = String(p.start.getUTCDate()).padStart(2, '0');
  const name = segment('file name', basename(p.file)) + (p.gzip ? '.gz' : '');
  const parts = [p.prefix, segment('environment', p.env), segment('node id', p.node), p.kind, yyyy, mm, dd, name];
  return parts.filter((s) => s !== '').join('/');
}
