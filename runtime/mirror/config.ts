// The mirror daemon's own config (YAML): one table of settings (MIRROR_SETTINGS)
// gives each field's default and reader, so the type, the defaults and the
// checks cannot drift apart. Example:
//
//   persistent_path: /var/lib/volley     # the MTA's persistent path this node holds (required)
//   listen: 0.0.0.0:7627                 # where the peer's mirror dials in
//   peer: 10.0.1.8:7627                  # the other node's mirror (required)
//   tls: { cert: mirror.crt, key: mirror.key }
//   peer_fingerprint: AB:CD:...          # SHA-256 of the peer's certificate, or:
//   peer_ca: ca.pem                      # a CA the peer's certificate chains to
//   secret_file: mirror.secret           # >= 32 bytes, the same on both nodes (the proxy protocol's HMAC)
//   mode: async                          # or sync: the 250 only once the secondary holds the message
//   sync_timeout: 2s                     # sync: how long intake waits for the secondary's ack
//   sync_policy: block                   # sync, secondary silent past sync_timeout: block (451) or degrade (go async, mark it outdated)
//   sync_socket: <persistent>/mirror/sync.sock   # where the local MTA asks for sync barriers
//   arbiter: { file: /shared/lease.json }         # or { s3: { bucket, key, region?, endpoint? } }: automatic failover
//   lease_ttl: 10s                       # the arbiter lease's lifetime; renewed every third of it
//   promote_command: [systemctl, start, volley-mta]   # run (argv, no shell) after this node becomes primary
//   admin_listen: 127.0.0.1:7628         # /healthz /readyz /metrics /status, POST /promote
//   resync_rate: 50MB                    # bytes per second for full copies of diverged files
//   poll_interval: 50ms                  # how often the primary looks for new bytes
//   batch_max: 4MB                       # bytes of file data per replication batch
//   fence: stop-mta                      # on demotion: stop intake (POST /drain/stop) and SIGTERM the MTA holding the path (or none)
//   mta_admin: 127.0.0.1:8025            # the local MTA's admin API (drain/stop when fencing, switchover)
//   mta_admin_token_file: admin.token    # its bearer token (else VOLLEY_ADMIN_TOKEN; none: fence by SIGTERM alone)
//
// Relative paths are relative to the config file.
import { dirname, resolve } from 'node:path';
import { VolleyError } from '../shared/errors';
import { readHostPort, type HostPort } from '../shared/host-port';
import { parseDuration, parseSize } from '../shared/units';
import { parseYamlMapping, readConfigFile } from '../shared/config/yaml-mapping';

export type MirrorMode = 'async' | 'sync';
export type SyncPolicy = 'block' | 'degrade';
export type FenceAction = 'stop-mta' | 'none';
/** Where the lease for automatic failover lives: an object with conditional writes. */
export type ArbiterConfig =
  | { kind: 'file'; path: string }
  | { kind: 's3'; bucket: string; key: string; region?: string; endpoint?: string };

export interface MirrorConfig {
  name: string;
  persistentPath: string;
  listen: HostPort;
  peer: HostPort;
  tls: { cert: string; key: string };
  peerFingerprint?: string;
  peerCa?: string;
  secretFile?: string;
  mode: MirrorMode;
  /** sync: how long intake waits for the secondary before `syncPolicy` applies. */
  syncTimeoutMs: number;
  syncPolicy: SyncPolicy;
  /** The Unix socket the local MTA asks for sync barriers on (in the mirror's own, never replicated, folder). */
  syncSocket: string;
  arbiter?: ArbiterConfig;
  leaseTtlMs: number;
  /** argv run after this node becomes the primary (e.g. start the MTA unit); none: the operator starts the MTA. */
  promoteCommand?: string[];
  adminListen: HostPort;
  resyncRateBytes: number;
  pollIntervalMs: number;
  batchMaxBytes: number;
  handshakeTimeoutMs: number;
  reconnectIntervalMs: number;
  fence: FenceAction;
  /** The local MTA's admin API: where intake is stopped (fencing, switchover). */
  mtaAdmin: HostPort;
  mtaAdminTokenFile?: string;
  logLevel?: string;
}

export const MIRROR_SECRET_ENV = 'VOLLEY_MIRROR_SECRET';
export const MIRROR_ADMIN_DEFAULT: HostPort = { address: '127.0.0.1', port: 7628 };

/**
 * Settings an operator may expect from the design (issue 18) that this slice
 * does not build: refused by name, never accepted and ignored.
 */
export const MIRROR_NOT_IMPLEMENTED: Readonly<Record<string, string>> = {};

interface Ctx {
  base: string;
  problems: string[];
}

type Reader<T> = (v: unknown, field: string, ctx: Ctx) => T;

const path: Reader<string> = (v, field, ctx) => {
  if (typeof v !== 'string' || v.length === 0) {
    ctx.problems.push(`${field}: a file path is required`);
    return '';
  }
  return resolve(ctx.base, v);
};
const optionalPath: Reader<string | undefined> = (v, field, ctx) => (v === undefined ? undefined : path(v, field, ctx));
const hostPort = (defaultAddress: string, example: string): Reader<HostPort> => (v, field, ctx) => {
  const hp = readHostPort(v, defaultAddress);
  if (!hp) ctx.problems.push(`${field}: expected address:port, e.g. ${example}`);
  return hp ?? { address: defaultAddress, port: 0 };
};
const duration: Reader<number> = (v, field, ctx) => {
  try {
    const ms = parseDuration(v as string | number);
    if (ms <= 0) ctx.problems.push(`${field}: must be more than 0`);
    return ms;
  } catch (err) {
    ctx.problems.push(`${field}: ${(err as Error).message}`);
    return 1;
  }
};
const size: Reader<number> = (v, field, ctx) => {
  try {
    const n = parseSize(v as string | number);
    if (n <= 0) ctx.problems.push(`${field}: must be more than 0`);
    return n;
  } catch (err) {
    ctx.problems.push(`${field}: ${(err as Error).message}`);
    return 1;
  }
};
const optionalString: Reader<string | undefined> = (v, field, ctx) => {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !v) ctx.problems.push(`${field}: expected a string`);
  return typeof v === 'string' ? v : undefined;
};
const oneOf = <T extends string>(values: readonly T[], refused: Record<string, string> = {}): Reader<T> => (v, field, ctx) => {
  if (typeof v === 'string' && refused[v]) ctx.problems.push(`${field}: "${v}" is not implemented yet (${refused[v]})`);
  else if (!values.includes(v as T)) ctx.problems.push(`${field}: one of ${values.join(', ')}`);
  return values.includes(v as T) ? (v as T) : values[0];
};

const readArbiter: Reader<ArbiterConfig | undefined> = (v, field, ctx) => {
  const a = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  if (typeof a.file === 'string' && a.s3 === undefined) return { kind: 'file', path: path(a.file, `${field}.file`, ctx) };
  if (typeof a.s3 === 'object' && a.s3 !== null && a.file === undefined) {
    const s3 = a.s3 as Record<string, unknown>;
    for (const k of Object.keys(s3)) if (!['bucket', 'key', 'region', 'endpoint'].includes(k)) ctx.problems.push(`${field}.s3.${k}: unknown setting`);
    if (typeof s3.bucket !== 'string' || !s3.bucket || typeof s3.key !== 'string' || !s3.key) {
      ctx.problems.push(`${field}.s3: bucket and key are required`);
      return undefined;
    }
    return { kind: 's3', bucket: s3.bucket, key: s3.key, region: optionalString(s3.region, `${field}.s3.region`, ctx), endpoint: optionalString(s3.endpoint, `${field}.s3.endpoint`, ctx) };
  }
  ctx.problems.push(`${field}: one of { file: <path> } or { s3: { bucket, key } }`);
  return undefined;
};

/** Mode sync's defaults, also what an AWS environment's pair gets when it names none (stacks/mirror-topology.ts). */
export const MIRROR_SYNC_DEFAULTS = { syncTimeout: '2s', syncPolicy: 'block' } as const;

/** YAML key -> [config field, default (undefined: required or optional), reader]. */
const MIRROR_SETTINGS = {
  name: ['name', () => process.env.HOSTNAME ?? 'mirror', optionalString],
  persistent_path: ['persistentPath', undefined, path],
  listen: ['listen', () => '0.0.0.0:7627', hostPort('0.0.0.0', '0.0.0.0:7627')],
  peer: ['peer', undefined, hostPort('127.0.0.1', '10.0.1.8:7627')],
  tls: ['tls', undefined, ((v, field, ctx) => {
    if (typeof v !== 'object' || v === null) {
      ctx.problems.push(`${field}: cert and key files are required (the mirror link is always TLS)`);
      return { cert: '', key: '' };
    }
    const t = v as Record<string, unknown>;
    return { cert: path(t.cert, `${field}.cert`, ctx), key: path(t.key, `${field}.key`, ctx) };
  }) as Reader<{ cert: string; key: string }>],
  peer_fingerprint: ['peerFingerprint', undefined, optionalString],
  peer_ca: ['peerCa', undefined, optionalPath],
  secret_file: ['secretFile', undefined, optionalPath],
  mode: ['mode', () => 'async', oneOf(['async', 'sync'] as const)],
  sync_timeout: ['syncTimeoutMs', () => MIRROR_SYNC_DEFAULTS.syncTimeout, duration],
  sync_policy: ['syncPolicy', () => MIRROR_SYNC_DEFAULTS.syncPolicy, oneOf(['block', 'degrade'] as const)],
  sync_socket: ['syncSocket', undefined, path],
  arbiter: ['arbiter', undefined, ((v, field, ctx) => readArbiter(v, field, ctx)) as Reader<ArbiterConfig | undefined>],
  lease_ttl: ['leaseTtlMs', () => '10s', duration],
  promote_command: ['promoteCommand', undefined, ((v, field, ctx) => {
    if (!Array.isArray(v) || v.length === 0 || !v.every((a) => typeof a === 'string' && a.length > 0)) {
      ctx.problems.push(`${field}: a list of strings (argv, run without a shell), e.g. [systemctl, start, volley-mta]`);
      return undefined;
    }
    return v as string[];
  }) as Reader<string[] | undefined>],
  admin_listen: ['adminListen', () => `${MIRROR_ADMIN_DEFAULT.address}:${MIRROR_ADMIN_DEFAULT.port}`, hostPort('127.0.0.1', '127.0.0.1:7628')],
  resync_rate: ['resyncRateBytes', () => '50MB', size],
  poll_interval: ['pollIntervalMs', () => '50ms', duration],
  batch_max: ['batchMaxBytes', () => '4MB', size],
  handshake_timeout: ['handshakeTimeoutMs', () => '10s', duration],
  reconnect_interval: ['reconnectIntervalMs', () => '1s', duration],
  fence: ['fence', () => 'stop-mta', oneOf(['stop-mta', 'none'] as const)],
  mta_admin: ['mtaAdmin', () => '127.0.0.1:8025', hostPort('127.0.0.1', '127.0.0.1:8025')],
  mta_admin_token_file: ['mtaAdminTokenFile', undefined, optionalPath],
  log_level: ['logLevel', undefined, oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const)],
} as const satisfies Record<string, readonly [keyof MirrorConfig, (() => unknown) | undefined, Reader<unknown>]>;

const REQUIRED = new Set(['persistent_path', 'peer', 'tls']);

export function loadMirrorConfig(file: string): MirrorConfig {
  return parseMirrorConfig(readConfigFile(file), file);
}

/** Parses and checks the mirror config; every problem is reported at once. */
export function parseMirrorConfig(text: string, file = '<mirror config>'): MirrorConfig {
  const raw = parseYamlMapping(text, file);
  const ctx: Ctx = { base: dirname(resolve(file)), problems: [] };
  for (const k of Object.keys(raw)) {
    if (MIRROR_NOT_IMPLEMENTED[k]) ctx.problems.push(`${k}: "${k}" is not implemented yet (${MIRROR_NOT_IMPLEMENTED[k]}): remove it`);
    else if (!(k in MIRROR_SETTINGS)) ctx.problems.push(`${k}: unknown setting`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, [field, fallback, read]] of Object.entries(MIRROR_SETTINGS)) {
    const given = raw[key];
    if (given === undefined && REQUIRED.has(key)) {
      ctx.problems.push(`${key}: required`);
      continue;
    }
    const v = given === undefined ? fallback?.() : given;
    if (v !== undefined) out[field] = (read as Reader<unknown>)(v, key, ctx);
  }
  const config = out as unknown as MirrorConfig;
  config.syncSocket ??= resolve(config.persistentPath ?? '/', 'mirror', 'sync.sock');
  if (!config.peerFingerprint && !config.peerCa) ctx.problems.push('peer_fingerprint or peer_ca: one is required to check the peer\'s certificate');
  if (ctx.problems.length > 0) throw new VolleyError('ECONFIG', ctx.problems.map((p) => `${file}: ${p}`).join('\n'));
  return config;
}
