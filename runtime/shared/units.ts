import { VolleyError } from './errors';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1024, k: 1024, mb: 1024 ** 2, m: 1024 ** 2, gb: 1024 ** 3, g: 1024 ** 3 };

/** "90s", "5m", "4d", "250ms" or a number of milliseconds. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value);
  if (!m) throw new VolleyError('EBADDURATION', `"${value}" is not a duration (use e.g. 250ms, 30s, 5m, 2h, 4d)`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]]);
}

/** "25MB", "64 MiB", "512k" or a number of bytes; binary multiples. */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(i?b?)\s*$/i.exec(value);
  if (!m) throw new VolleyError('EBADSIZE', `"${value}" is not a size (use e.g. 512KB, 25MB, 1GB)`);
  const unit = (m[2] + (m[3] ? 'b' : '')).toLowerCase().replace('ib', 'b');
  return Math.round(Number(m[1]) * (SIZE_UNITS[unit] ?? SIZE_UNITS[m[2].toLowerCase()]));
}
