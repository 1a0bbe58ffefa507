// The `drain` section of the MTA config (issue 17): where this node listens
// for queues drained from other nodes, who may send them (CIDRs, proxies, the
// shared secret), how long it remembers drained ids to refuse duplicates, and
// how large a batch may be. The same file on every node, so the source signs
// with the secret the destination checks.

import { CidrList } from '../cidr';
import { parseDuration, parseSize } from '../units';
import { converter } from './events';
import type { TlsFiles } from './types';

type Dur = string | number;
type Path = (string | number)[];
type Report = (path: Path, message: string) => void;

const duration = { type: ['string', 'integer'], description: 'e.g. 250ms, 30s, 5m, 2h, 4d' };
const size = { type: ['string', 'integer'], description: 'e.g. 512KB, 25MB' };
const cidrs = { type: 'array', items: { type: 'string' } };

export const drainSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'the HTTPS endpoint that accepts queues drained from other nodes (`volley drain`), and the secret both ends share',
  properties: {
    listen: {
      type: 'object',
      additionalProperties: false,
      properties: { address: { type: 'string' }, port: { type: 'integer', minimum: 0, maximum: 65535 } },
    },
    tls: {
      type: 'object',
      additionalProperties: false,
      required: ['cert', 'key'],
      properties: { cert: { type: 'string' }, key: { type: 'string' } },
      description: "default: the HTTP API's TLS files",
    },
    secret_file: { type: 'string', description: 'the shared drain secret (>= 32 bytes); or env VOLLEY_DRAIN_SECRET' },
    previous_secret_file: { type: 'string', description: 'the secret a rotation replaces, still accepted (default <secret_file>.previous when it exists)' },
    accept_from: { ...cidrs, description: 'source addresses allowed to drain into this node' },
    trusted_proxies: { ...cidrs, description: 'load balancers whose X-Forwarded-For / Client-IP names the source address' },
    dedupe_retention: { ...duration, description: 'how long a drained id is remembered and answered `duplicate` (default 7d)' },
    max_batch_bytes: { ...size, description: 'largest batch body accepted (default 32MB)' },
  },
};

export interface RawDrain {
  listen?: { address?: string; port?: number };
  tls?: { cert: string; key: string };
  secret_file?: string;
  previous_secret_file?: string;
  accept_from?: string[];
  trusted_proxies?: string[];
  dedupe_retention?: Dur;
  max_batch_bytes?: Dur;
}

export interface DrainConfig {
  listen: { address: string; port: number };
  /** Absent: the HTTP API's TLS files (or its self-signed pair). */
  tls?: TlsFiles;
  secretFile?: string;
  previousSecretFile?: string;
  acceptFrom: string[];
  trustedProxies: string[];
  dedupeRetentionMs: number;
  maxBatchBytes: number;
}

export const DRAIN_SECRET_ENV = 'VOLLEY_DRAIN_SECRET';
export const DEFAULT_DRAIN_PORT = 8443;

/** The section with its defaults; absent means this node runs no drain endpoint. */
export function normaliseDrain(raw: RawDrain | undefined, report: Report): DrainConfig | undefined {
  if (!raw) return undefined;
  const convert = (v: Dur | undefined, dflt: number, path: Path, parse: (v: Dur) => number): number => converter(report, parse)(v, dflt, path);
  const list = (entries: string[] | undefined, field: string): string[] => {
    (entries ?? []).forEach((entry, i) => {
      try {
        new CidrList([entry]);
      } catch (err) {
        report(['drain', field, i], (err as Error).message);
      }
    });
    return entries ?? [];
  };
  const acceptFrom = list(raw.accept_from, 'accept_from');
  const trustedProxies = list(raw.trusted_proxies, 'trusted_proxies');
  // An endpoint nobody may reach is a mistake, not a setting.
  if (acceptFrom.length === 0 && trustedProxies.length === 0) report(['drain'], 'needs accept_from (or trusted_proxies): no source could drain into this node');
  const maxBatchBytes = convert(raw.max_batch_bytes, 32 * 1024 * 1024, ['drain', 'max_batch_bytes'], parseSize);
  if (maxBatchBytes > 1024 ** 3) report(['drain', 'max_batch_bytes'], 'at most 1GB: a batch is held in memory');
  return {
    listen: { address: raw.listen?.address ?? '0.0.0.0', port: raw.listen?.port ?? DEFAULT_DRAIN_PORT },
    tls: raw.tls,
    secretFile: raw.secret_file,
    previousSecretFile: raw.previous_secret_file,
    acceptFrom,
    trustedProxies,
    dedupeRetentionMs: convert(raw.dedupe_retention, 7 * 86_400_000, ['drain', 'dedupe_retention'], parseDuration),
    maxBatchBytes,
  };
}
