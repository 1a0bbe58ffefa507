// MTA-STS (RFC 8461) text formats: the `_mta-sts` TXT record (3.1), the policy
// file (3.2) and the MX pattern match (4.1). Pure functions, so the rules can
// be tested line by line; fetching and caching live beside this file.

import { VolleyError } from '../../../shared/errors';

export type StsMode = 'enforce' | 'testing' | 'none';

export interface StsPolicy {
  mode: StsMode;
  /** MX patterns as published, lower-case ("mx.example.com", "*.example.net"). */
  mx: string[];
  /** Seconds (at most RFC 8461's 31557600). */
  maxAge: number;
  /** The policy's lines as fetched, for TLS-RPT's policy-string. */
  lines: string[];
}

/** RFC 8461 3.2: max_age may not exceed one year. */
const MAX_AGE_LIMIT = 31_557_600;

/**
 * The id of a `v=STSv1` record among a name's TXT strings (each record's
 * chunks joined), or undefined when there is none. Two STSv1 records, or one
 * that is malformed, mean "no policy" (3.1): the domain gets no enforcement
 * from a record it did not publish cleanly.
 */
export function parseStsTxt(records: string[][]): string | undefined {
  const sts = records.map((chunks) => chunks.join('')).filter((r) => /^v=STSv1\s*(;|$)/.test(r));
  if (sts.length !== 1) return undefined;
  const fields = new Map<string, string>();
  for (const part of sts[0].split(';')) {
    const m = /^\s*([A-Za-z0-9_.-]+)=([\x21-\x3a\x3c\x3e-\x7e]*)\s*$/.exec(part);
    if (m) fields.set(m[1], m[2]);
    else if (part.trim() !== '') return undefined;
  }
  const id = fields.get('id');
  return id !== undefined && /^[A-Za-z0-9]{1,32}$/.test(id) ? id : undefined;
}

/** Parses a policy body (3.2); throws a VolleyError (ESTSPOLICY) naming what is wrong. */
export function parseStsPolicy(text: string): StsPolicy {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const invalid = (why: string): VolleyError => new VolleyError('ESTSPOLICY', `invalid MTA-STS policy: ${why}`);
  let version: string | undefined;
  let mode: string | undefined;
  let maxAge: number | undefined;
  const mx: string[] = [];
  for (const line of lines) {
    const m = /^([A-Za-z0-9_]+):[ \t]*(.*?)[ \t]*$/.exec(line);
    if (!m) throw invalid(`line "${line.slice(0, 80)}" is not "key: value"`);
    const [, key, value] = m;
    // Only the first occurrence of a single-valued key counts (3.2); unknown keys are ignored.
    if (key === 'version' && version === undefined) version = value;
    else if (key === 'mode' && mode === undefined) mode = value;
    else if (key === 'max_age' && maxAge === undefined) {
      if (!/^\d{1,10}$/.test(value)) throw invalid(`max_age "${value}" is not a number of seconds`);
      maxAge = Math.min(Number(value), MAX_AGE_LIMIT);
    } else if (key === 'mx') mx.push(value.toLowerCase().replace(/\.$/, ''));
  }
  if (version !== 'STSv1') throw invalid(`version is ${version === undefined ? 'missing' : `"${version}"`}, not STSv1`);
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') throw invalid(`mode is ${mode === undefined ? 'missing' : `"${mode}"`}`);
  if (maxAge === undefined) throw invalid('max_age is missing');
  if (mode !== 'none' && mx.length === 0) throw invalid('no mx pattern');
  return { mode, mx, maxAge, lines };
}

/**
 * Whether MX host `host` matches one of the patterns (4.1): exactly, or a
 * "*." pattern standing for exactly one leftmost label.
 */
export function mxMatches(host: string, patterns: string[]): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return patterns.some((p) => {
    if (!p.startsWith('*.')) return p === h;
    const dot = h.indexOf('.');
    return dot > 0 && h.slice(dot + 1) === p.slice(2);
  });
}
