// The lb's options: one object the daemon runs from, built from flags and an
// optional YAML file (validated with ajv). Flags win over the file.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import Ajv, { type ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { VolleyError } from '../shared/errors';
import { readHostPort } from '../shared/host-port';
import { parseDuration } from '../shared/units';

export type ListenerMode = 'smtp' | 'tcp';

export interface HostPort {
  host: string;
  port: number;
}

export interface ListenerOptions {
  /** A name for logs, /status and metric labels (default: the mode and the port, e.g. "smtp-25"). */
  name: string;
  address: string;
  port: number;
  /** smtp: wait for the backend's 220 before the client sees anything; tcp: plain TCP (the HTTP API). */
  mode: ListenerMode;
  backends: HostPort[];
  /** Send a PROXY protocol v1 header first on every backend connection of this listener. */
  proxyProtocol: boolean;
}

export interface HealthOptions {
  intervalMs: number;
  /** Bound on one check: connect plus the greeting. */
  timeoutMs: number;
  /** Consecutive failures (checks or real traffic) before a backend is taken out. */
  fall: number;
  /** Consecutive successful checks before a down backend is brought back. */
  rise: number;
}

export interface LbOptions {
  listeners: ListenerOptions[];
  /** The admin HTTP port (/healthz, /readyz, /status, /metrics); undefined: none. */
  admin?: HostPort;
  health: HealthOptions;
  connectTimeoutMs: number;
  greetingTimeoutMs: number;
  /** Client connections at once over all listeners; beyond it SMTP clients get a 421, TCP clients a close. */
  maxConnections: number;
  /**
   * Of those, from one client address: one client (a flood, a slowloris)
   * cannot take every slot while the MTAs' own per-client limits, summed
   * over their workers, exceed the lb's total. Beyond it as maxConnections.
   */
  maxConnectionsPerClient: number;
  /** A proxied session with no byte either way for this long is closed. */
  idleTimeoutMs: number;
  /** On SIGTERM/SIGINT: how long open sessions may run on before they are closed. */
  drainTimeoutMs: number;
  /**
   * The local address backend connections (sessions and checks) come from;
   * undefined: the system's choice. Lets MTAs trust the lb's address alone
   * while plain clients on the same host reach an MTA directly.
   */
  sourceAddress?: string;
}

export const DEFAULTS = {
  adminAddress: '127.0.0.1:8026',
  healthInterval: '2s',
  healthTimeout: '5s',
  fall: 3,
  rise: 2,
  connectTimeout: '5s',
  greetingTimeout: '10s',
  maxConnections: 10_000,
  maxConnectionsPerClient: 1_000,
  idleTimeout: '10m',
  drainTimeout: '30s',
};

/**
 * "10.0.0.1:25", "[::1]:25", ":25" or "25" (the address then defaults): the
 * one reading of runtime/shared/host-port.ts, as the lb's {host, port}; port 0
 * is refused here (an lb target or listener always names its port).
 */
export function parseHostPort(value: string, defaultHost = '127.0.0.1'): HostPort {
  const hp = readHostPort(value, defaultHost);
  if (!hp || hp.port < 1) throw new VolleyError('EBADADDRESS', `"${value}" is not [host:]port`);
  return { host: hp.address, port: hp.port };
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/**
 * "0.0.0.0:25=smtp", "0.0.0.0:8080=tcp" or "0.0.0.0:25" (smtp); "+proxy" after
 * the mode ("0.0.0.0:8080=tcp+proxy") turns the PROXY header on for that
 * listener alone (proxy: undefined when not said, so --proxy-protocol decides).
 */
export function parseListen(value: string): { address: string; port: number; mode: ListenerMode; proxy?: true } {
  const eq = value.lastIndexOf('=');
  const after = eq === -1 ? 'smtp' : value.slice(eq + 1).trim();
  const proxy = after.endsWith('+proxy');
  const mode = proxy ? after.slice(0, -'+proxy'.length) : after;
  if (mode !== 'smtp' && mode !== 'tcp') throw new VolleyError('EBADFLAG', `"${value}": after "=" comes smtp or tcp, optionally with +proxy (e.g. tcp+proxy)`);
  const hp = parseHostPort(eq === -1 ? value : value.slice(0, eq), '0.0.0.0');
  return { address: hp.host, port: hp.port, mode, ...(proxy ? { proxy } : {}) };
}

/** What the YAML file may hold. Durations as "2s" strings or milliseconds. */
export interface LbFile {
  admin?: string | null;
  proxyProtocol?: boolean;
  connectTimeout?: string | number;
  greetingTimeout?: string | number;
  maxConnections?: number;
  maxConnectionsPerClient?: number;
  idleTimeout?: string | number;
  drainTimeout?: string | number;
  sourceAddress?: string;
  healthCheck?: { interval?: string | number; timeout?: string | number; fall?: number; rise?: number };
  listeners?: { name?: string; listen: string; mode?: ListenerMode; proxyProtocol?: boolean; backends: string[] }[];
}

const duration = { type: ['string', 'integer'] };
const FILE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    admin: { type: ['string', 'null'] },
    proxyProtocol: { type: 'boolean' },
    connectTimeout: duration,
    greetingTimeout: duration,
    maxConnections: { type: 'integer', minimum: 1 },
    maxConnectionsPerClient: { type: 'integer', minimum: 1 },
    idleTimeout: duration,
    drainTimeout: duration,
    sourceAddress: { type: 'string' },
    healthCheck: {
      type: 'object',
      additionalProperties: false,
      properties: { interval: duration, timeout: duration, fall: { type: 'integer', minimum: 1 }, rise: { type: 'integer', minimum: 1 } },
    },
    listeners: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['listen', 'backends'],
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9_.-]+$' },
          listen: { type: 'string' },
          mode: { enum: ['smtp', 'tcp'] },
          proxyProtocol: { type: 'boolean' },
          backends: { type: 'array', minItems: 1, items: { type: 'string' } },
        },
      },
    },
  },
} as const;

let validator: ValidateFunction<LbFile> | undefined;

export function readLbFile(path: string): LbFile {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, 'utf8')) ?? {};
  } catch (err) {
    throw new VolleyError('EBADCONFIG', `${path}: ${(err as Error).message}`, { cause: err });
  }
  validator ??= new Ajv({ allErrors: true, allowUnionTypes: true }).compile<LbFile>(FILE_SCHEMA);
  const validateFile = validator;
  if (!validateFile(doc)) {
    const why = (validateFile.errors ?? [])
      .map((e) => `${e.instancePath || '/'} ${e.message}${e.keyword === 'additionalProperties' ? `: ${String(e.params.additionalProperty)}` : ''}`)
      .join('; ');
    throw new VolleyError('EBADCONFIG', `${path}: ${why}`);
  }
  return doc;
}

/** What the CLI collected; every field optional so the file and defaults fill the rest. */
export interface LbFlags {
  listeners?: { listen: string; backends: string[] }[];
  proxyProtocol?: boolean;
  admin?: string;
  noAdmin?: boolean;
  healthInterval?: string;
  healthTimeout?: string;
  fall?: string | number;
  rise?: string | number;
  connectTimeout?: string;
  greetingTimeout?: string;
  maxConnections?: string | number;
  maxConnectionsPerClient?: string | number;
  idleTimeout?: string;
  drainTimeout?: string;
  sourceAddress?: string;
}

function positiveInt(value: string | number, what: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new VolleyError('EBADFLAG', `${what}: "${value}" is not a whole number ≥ 1`);
  return n;
}

/** Flags over the file over the defaults; throws a VolleyError with a clear message on anything wrong. */
export function resolveOptions(flags: LbFlags, file: LbFile = {}): LbOptions {
  const fileProxy = flags.proxyProtocol ?? file.proxyProtocol ?? false;
  let listeners: ListenerOptions[];
  if (flags.listeners && flags.listeners.length > 0) {
    listeners = flags.listeners.map((l) => {
      const { proxy, ...p } = parseListen(l.listen);
      return { name: `${p.mode}-${p.port}`, ...p, proxyProtocol: proxy ?? fileProxy, backends: l.backends.map((b) => parseHostPort(b)) };
    });
  } else {
    listeners = (file.listeners ?? []).map((l) => {
      const { proxy, ...p } = parseListen(l.mode ? `${l.listen}=${l.mode}` : l.listen);
      return {
        name: l.name ?? `${p.mode}-${p.port}`,
        ...p,
        proxyProtocol: flags.proxyProtocol ?? proxy ?? l.proxyProtocol ?? file.proxyProtocol ?? false,
        backends: l.backends.map((b) => parseHostPort(b)),
      };
    });
  }
  if (listeners.length === 0) throw new VolleyError('EBADCONFIG', 'no listener: give --listen (or listeners: in --config)');
  const names = new Set<string>();
  for (const l of listeners) {
    if (l.backends.length === 0) throw new VolleyError('EBADCONFIG', `listener ${l.name} has no backend: give --backend after its --listen`);
    if (names.has(l.name)) throw new VolleyError('EBADCONFIG', `two listeners are named ${l.name}`);
    names.add(l.name);
  }
  const adminText = flags.noAdmin ? null : flags.admin ?? (file.admin === undefined ? DEFAULTS.adminAddress : file.admin);
  const hc = file.healthCheck ?? {};
  const sourceAddress = flags.sourceAddress ?? file.sourceAddress;
  if (sourceAddress !== undefined && !isIP(sourceAddress)) throw new VolleyError('EBADCONFIG', `source address "${sourceAddress}" is not an IP address`);
  const opts: LbOptions = {
    listeners,
    admin: adminText ? parseHostPort(adminText) : undefined,
    health: {
      intervalMs: parseDuration(flags.healthInterval ?? hc.interval ?? DEFAULTS.healthInterval),
      timeoutMs: parseDuration(flags.healthTimeout ?? hc.timeout ?? DEFAULTS.healthTimeout),
      fall: positiveInt(flags.fall ?? hc.fall ?? DEFAULTS.fall, 'fall'),
      rise: positiveInt(flags.rise ?? hc.rise ?? DEFAULTS.rise, 'rise'),
    },
    connectTimeoutMs: parseDuration(flags.connectTimeout ?? file.connectTimeout ?? DEFAULTS.connectTimeout),
    greetingTimeoutMs: parseDuration(flags.greetingTimeout ?? file.greetingTimeout ?? DEFAULTS.greetingTimeout),
    maxConnections: positiveInt(flags.maxConnections ?? file.maxConnections ?? DEFAULTS.maxConnections, 'max connections'),
    maxConnectionsPerClient: positiveInt(flags.maxConnectionsPerClient ?? file.maxConnectionsPerClient ?? DEFAULTS.maxConnectionsPerClient, 'max connections per client'),
    idleTimeoutMs: parseDuration(flags.idleTimeout ?? file.idleTimeout ?? DEFAULTS.idleTimeout),
    drainTimeoutMs: parseDuration(flags.drainTimeout ?? file.drainTimeout ?? DEFAULTS.drainTimeout),
    sourceAddress,
  };
  for (const [what, ms] of [
    ['health interval', opts.health.intervalMs],
    ['health timeout', opts.health.timeoutMs],
    ['connect timeout', opts.connectTimeoutMs],
    ['greeting timeout', opts.greetingTimeoutMs],
    ['idle timeout', opts.idleTimeoutMs],
  ] as const) {
    if (ms <= 0) throw new VolleyError('EBADCONFIG', `${what} must be more than 0`);
  }
  return opts;
}
