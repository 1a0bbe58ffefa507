// The day's TLS results per policy, for TLS-RPT (RFC 8460): every session the
// engine opened (or refused) under a policy counts as a success or a failure
// of that policy, per UTC day. Counts collect in memory and are appended to a
// small JSONL file per worker and day under the persistent path
// (tls-rpt/<worker>-<YYYY-MM-DD>.jsonl) every few seconds and at stop: a
// restart keeps the day's counts, a kill -9 loses at most the last interval's.
// Lines are increments, so reading a day sums every line of every worker.
// With an `interest`, only domains that publish a `_smtp._tls` record are
// counted (a session waits in memory for that answer, then counts or not).

import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { ReportedPolicy } from './resolver';
import type { ReportInterest } from './tls-rpt-interest';

export interface FailureDetail {
  /** RFC 8460 4.3 result type (sts-policy-invalid, certificate-host-mismatch, ...). */
  resultType: string;
  sendingIp?: string;
  mxHost?: string;
  receivingIp?: string;
  /** Free text for the receiver's operator (RFC 8460's failure-reason-code). */
  reasonCode?: string;
}

export interface SessionResult {
  policy: ReportedPolicy;
  ok: boolean;
  failure?: FailureDetail;
}

/** One day's counts of one policy. */
export interface PolicyCounts {
  policy: ReportedPolicy;
  ok: number;
  failed: number;
  failures: (FailureDetail & { count: number })[];
}

interface Line {
  day: string;
  policy: ReportedPolicy;
  ok: number;
  failed: number;
  failures: (FailureDetail & { count: number })[];
}

/** The UTC day of an instant, YYYY-MM-DD. */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export function tlsRptDir(persistentPath: string): string {
  return join(persistentPath, 'tls-rpt');
}

export class TlsRptStore {
  /** day -> policy key -> counts not yet written. */
  private pending = new Map<string, Map<string, PolicyCounts>>();
  private timer?: NodeJS.Timeout;
  private writing: Promise<void> = Promise.resolve();
  private readonly now: () => number;

  constructor(private readonly options: { dir: string; worker: string; now?: () => number; flushMs?: number; logger?: Logger; interest?: ReportInterest }) {
    this.now = options.now ?? Date.now;
    mkdirSync(options.dir, { recursive: true });
    if (options.flushMs !== 0) {
      this.timer = setInterval(() => void this.flush(), options.flushMs ?? 5000);
      this.timer.unref();
    }
  }

  add(result: SessionResult): void {
    const day = utcDay(this.now());
    const { interest } = this.options;
    // Unknown yet: counted (or not) when the answer comes.
    const wants = interest ? interest.wants(result.policy.domain, (yes) => yes && this.count(day, result)) : true;
    if (wants === true) this.count(day, result);
  }

  private count(day: string, result: SessionResult): void {
    let byPolicy = this.pending.get(day);
    if (!byPolicy) this.pending.set(day, (byPolicy = new Map()));
    addTo(byPolicy, result.policy, result.ok ? 1 : 0, result.ok ? 0 : 1, result.failure ? [{ ...result.failure, count: 1 }] : []);
  }

  /** Appends what was counted since the last flush; one write per day touched. */
  flush(): Promise<void> {
    const batch = this.pending;
    this.pending = new Map();
    this.writing = this.writing.then(async () => {
      for (const [day, byPolicy] of batch) {
        const text = [...byPolicy.values()].map((c) => JSON.stringify({ day, ...c } satisfies Line)).join('\n') + '\n';
        try {
          await appendFile(join(this.options.dir, `${this.options.worker}-${day}.jsonl`), text, { flush: true });
        } catch (err) {
          // Counted again next time rather than lost: a full disk passes.
          this.options.logger?.warn({ err }, 'TLS-RPT: could not write the day\'s counts; kept in memory');
          for (const c of byPolicy.values()) this.merge(day, c);
        }
      }
    });
    return this.writing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private merge(day: string, c: PolicyCounts): void {
    let byPolicy = this.pending.get(day);
    if (!byPolicy) this.pending.set(day, (byPolicy = new Map()));
    addTo(byPolicy, c.policy, c.ok, c.failed, c.failures);
  }
}

function addTo(byPolicy: Map<string, PolicyCounts>, policy: ReportedPolicy, ok: number, failed: number, failures: (FailureDetail & { count: number })[]): void {
  const key = JSON.stringify(policy);
  let c = byPolicy.get(key);
  if (!c) byPolicy.set(key, (c = { policy, ok: 0, failed: 0, failures: [] }));
  c.ok += ok;
  c.failed += failed;
  for (const f of failures) {
    const same = c.failures.find((x) => x.resultType === f.resultType && x.sendingIp === f.sendingIp && x.mxHost === f.mxHost && x.receivingIp === f.receivingIp && x.reasonCode === f.reasonCode);
    if (same) same.count += f.count;
    else c.failures.push({ ...f });
  }
}

/** Days with counts in `dir` (any worker), oldest first. */
export function storedDays(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const days = new Set(names.map((n) => /-(\d{4}-\d{2}-\d{2})\.jsonl$/.exec(n)?.[1]).filter((d): d is string => d !== undefined));
  return [...days].sort();
}

/** The files holding `day`'s counts (every worker's). */
export function dayFiles(dir: string, day: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith(`-${day}.jsonl`)).map((n) => join(dir, n));
}

/** A day's counts from every worker's file, per policy domain; a torn last line (a crash mid-append) is skipped. */
export function readDay(dir: string, day: string): Map<string, PolicyCounts[]> {
  const byPolicy = new Map<string, PolicyCounts>();
  for (const file of dayFiles(dir, day)) {
    for (const text of readFileSync(file, 'utf8').split('\n')) {
      if (text === '') continue;
      let line: Line;
      try {
        line = JSON.parse(text) as Line;
      } catch {
        continue;
      }
      if (line.day === day) addTo(byPolicy, line.policy, line.ok, line.failed, line.failures);
    }
  }
  const byDomain = new Map<string, PolicyCounts[]>();
  for (const c of byPolicy.values()) byDomain.set(c.policy.domain, [...(byDomain.get(c.policy.domain) ?? []), c]);
  return byDomain;
}
