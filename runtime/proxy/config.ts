import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import { CidrList } from '../shared/cidr';
import { VolleyError } from '../shared/errors';
import { readHostPort, type HostPort } from '../shared/host-port';
import { loadPreviousSecret, loadSecret } from '../shared/proxy-protocol/handshake';
import { RFC5321_CLIENT_TIMEOUTS } from '../shared/smtp/client';
import { mxTrust } from '../shared/smtp/mx-trust';
import { parseDuration } from '../shared/units';
import type { ProxyServerOptions } from './server';
import { parseYamlMapping, readConfigFile } from '../shared/config/yaml-mapping';

/**
 * The proxy's own small config (YAML). Example:
 *
 *   name: proxy-a                      # in logs and the welcome frame; default: host name
 *   listen: 10.0.0.7:7625              # address:port for MTAs (private network)
 *   tls:                               # always TLS; self-signed is fine, MTAs pin the fingerprint
 *     cert: /etc/volley/proxy.crt
 *     key: /etc/volley/proxy.key
 *   secret_file: /etc/volley/proxy.secret   # >= 32 bytes; or env VOLLEY_PROXY_SECRET
 *   previous_secret_file: /etc/volley/proxy.secret.previous
 *                                      # optional, during a rotation: MTAs may prove this one
 *                                      # too; default: <secret_file>.previous if it exists
 *   allow_from: [10.0.0.0/16]          # optional source CIDRs; default: any (the HMAC still applies)
 *   sending_ips: [203.0.113.10, 203.0.113.11]
 *   idle_timeout: 30s                  # idle MX sessions kept this long for reuse (0: no reuse)
 *   max_transactions_per_session: 100
 *   handshake_timeout: 10s             # optional
 *   client_idle_timeout: 5m            # optional: idle MTA connections closed after
 *   mx_timeouts:                       # optional, RFC 5321 defaults
 *     connect: 30s
 *     greeting: 5m
 *     command: 5m
 *     data_init: 2m
 *     data_block: 3m
 *     final_dot: 10m
 *     tls: 30s                         # the TLS handshake after STARTTLS
 *   mx_tls_ca_file: /etc/volley/mx-ca.pem
 *                                      # optional: PEM CAs trusted for MX certificates (verify,
 *                                      # mta-sts) in addition to Node's store; the MTA's
 *                                      # delivery.tls_ca_file for sessions this proxy opens
 *   throttle_merge: average            # optional: how MTAs' throttle limits combine on the
 *                                      # control channel: average (each MTA has the cluster
 *                                      # limit) or sum (each has its share); default average
 *   log_level: info                    # optional
 *   admin_listen: 127.0.0.1:7626       # optional: /healthz, /readyz, /metrics (HTTP, read-only, no token)
 *
 * SIGHUP reloads this file (see ProxyServer.reload): everything applies live
 * except listen, admin_listen and throttle_merge, which are kept (a warning
 * names them) until a restart; a file that fails to load changes nothing.
 *
 * Relative paths are relative to the config file.
 */
export interface ProxyConfig {
  name: string;
  listen: { address: string; port: number };
  tls: { cert: string; key: string };
  secretFile?: string;
  /** The secret a rotation replaces; undefined: `<secretFile>.previous` when that file exists. */
  previousSecretFile?: string;
  allowFrom: string[];
  sendingIps: string[];
  idleTimeoutMs: number;
  maxTransactionsPerSession: number;
  handshakeTimeoutMs: number;
  clientIdleTimeoutMs: number;
  mxTimeouts: Partial<Record<'connectMs' | 'greetingMs' | 'commandMs' | 'dataInitMs' | 'dataBlockMs' | 'finalDotMs' | 'tlsMs', number>>;
  /** PEM CAs added to Node's store for MX certificates. */
  mxTlsCaFile?: string;
  throttleMerge: 'average' | 'sum';
  logLevel?: string;
  /** The admin HTTP port (health, readiness, metrics). */
  adminListen: { address: string; port: number };
}

/** The admin port's default: loopback, beside the MTA listener's 7625. Other parts of the fleet rely on it. */
export const PROXY_ADMIN_DEFAULT = { address: '127.0.0.1', port: 7626 } as const;

export const PROXY_SECRET_ENV = 'VOLLEY_PROXY_SECRET';

const KNOWN = new Set(['name', 'listen', 'tls', 'secret_file', 'previous_secret_file', 'allow_from', 'sending_ips', 'idle_timeout', 'max_transactions_per_session', 'handshake_timeout', 'client_idle_timeout', 'mx_timeouts', 'mx_tls_ca_file', 'throttle_merge', 'log_level', 'admin_listen']);
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const MX_TIMEOUT_KEYS: Record<string, keyof ProxyConfig['mxTimeouts']> = {
  connect: 'connectMs',
  greeting: 'greetingMs',
  command: 'commandMs',
  data_init: 'dataInitMs',
  data_block: 'dataBlockMs',
  final_dot: 'finalDotMs',
  tls: 'tlsMs',
};

export function loadProxyConfig(file: string): ProxyConfig {
  return parseProxyConfig(readConfigFile(file), file);
}

/** Parses and checks the proxy config; every problem is reported at once. */
export function parseProxyConfig(text: string, file = '<proxy config>'): ProxyConfig {
  const c = parseYamlMapping(text, file);
  const problems: string[] = [];
  const base = dirname(resolve(file));
  const path = (p: unknown, field: string): string => {
    if (typeof p !== 'string' || p.length === 0) {
      problems.push(`${field}: a file path is required`);
      return '';
    }
    return resolve(base, p);
  };
  const duration = (v: unknown, field: string, fallback: number): number => {
    if (v === undefined) return fallback;
    try {
      return parseDuration(v as string | number);
    } catch (err) {
      problems.push(`${field}: ${(err as Error).message}`);
      return fallback;
    }
  };
  for (const k of Object.keys(c)) if (!KNOWN.has(k)) problems.push(`${k}: unknown setting`);

  const listen = hostPort(c.listen, 'listen', '0.0.0.0', '10.0.0.7:7625', problems) ?? { address: '0.0.0.0', port: 0 };
  const adminListen = c.admin_listen === undefined ? { ...PROXY_ADMIN_DEFAULT } : (hostPort(c.admin_listen, 'admin_listen', PROXY_ADMIN_DEFAULT.address, '127.0.0.1:7626', problems) ?? { ...PROXY_ADMIN_DEFAULT });

  const tlsRaw = c.tls as Record<string, unknown> | undefined;
  if (typeof tlsRaw !== 'object' || tlsRaw === null) problems.push('tls: cert and key files are required (the MTA↔proxy link is always TLS)');
  const tls = { cert: tlsRaw ? path(tlsRaw.cert, 'tls.cert') : '', key: tlsRaw ? path(tlsRaw.key, 'tls.key') : '' };

  const secretFile = c.secret_file === undefined ? undefined : path(c.secret_file, 'secret_file');
  const previousSecretFile = c.previous_secret_file === undefined ? undefined : path(c.previous_secret_file, 'previous_secret_file');
  const mxTlsCaFile = c.mx_tls_ca_file === undefined ? undefined : path(c.mx_tls_ca_file, 'mx_tls_ca_file');

  const allowFrom = stringList(c.allow_from, 'allow_from', problems);
  try {
    new CidrList(allowFrom);
  } catch (err) {
    problems.push(`allow_from: ${(err as Error).message}`);
  }
  const sendingIps = stringList(c.sending_ips, 'sending_ips', problems);
  if (sendingIps.length === 0) problems.push('sending_ips: at least one sending IP is required');
  for (const ip of sendingIps) if (!isIP(ip)) problems.push(`sending_ips: "${ip}" is not an IP address`);

  const maxTx = c.max_transactions_per_session ?? 100;
  if (!Number.isInteger(maxTx) || (maxTx as number) < 1) problems.push('max_transactions_per_session: a positive integer is required');

  const mxTimeouts: ProxyConfig['mxTimeouts'] = {};
  if (c.mx_timeouts !== undefined) {
    if (typeof c.mx_timeouts !== 'object' || c.mx_timeouts === null) problems.push('mx_timeouts: expected a mapping');
    else {
      for (const [k, v] of Object.entries(c.mx_timeouts)) {
        const key = MX_TIMEOUT_KEYS[k];
        if (!key) problems.push(`mx_timeouts.${k}: unknown (use ${Object.keys(MX_TIMEOUT_KEYS).join(', ')})`);
        else mxTimeouts[key] = duration(v, `mx_timeouts.${k}`, 0);
      }
    }
  }

  // Checked here so that a reload with a typo is refused instead of throwing inside the logger.
  if (c.log_level !== undefined && (typeof c.log_level !== 'string' || !LOG_LEVELS.includes(c.log_level))) problems.push(`log_level: one of ${LOG_LEVELS.join(', ')}`);

  const merge = c.throttle_merge ?? 'average';
  if (merge !== 'average' && merge !== 'sum') problems.push('throttle_merge: average or sum');

  const config: ProxyConfig = {
    name: typeof c.name === 'string' && c.name ? c.name : (process.env.HOSTNAME ?? 'proxy'),
    listen,
    tls,
    secretFile,
    previousSecretFile,
    allowFrom,
    sendingIps,
    idleTimeoutMs: duration(c.idle_timeout, 'idle_timeout', 30_000),
    maxTransactionsPerSession: maxTx as number,
    handshakeTimeoutMs: duration(c.handshake_timeout, 'handshake_timeout', 10_000),
    clientIdleTimeoutMs: duration(c.client_idle_timeout, 'client_idle_timeout', 300_000),
    mxTimeouts,
    mxTlsCaFile,
    throttleMerge: merge === 'sum' ? 'sum' : 'average',
    logLevel: typeof c.log_level === 'string' ? c.log_level : undefined,
    adminListen,
  };
  if (problems.length > 0) throw new VolleyError('ECONFIG', problems.map((p) => `${file}: ${p}`).join('\n'));
  return config;
}

/** readHostPort, noting a problem (with an example) when the value is not one. */
function hostPort(v: unknown, field: string, defaultAddress: string, example: string, problems: string[]): HostPort | undefined {
  const hp = readHostPort(v, defaultAddress);
  if (!hp) problems.push(`${field}: expected address:port, e.g. ${example}`);
  return hp;
}

function stringList(v: unknown, field: string, problems: string[]): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    problems.push(`${field}: expected a list of strings`);
    return [];
  }
  return v as string[];
}

/** Reads the files the config names and builds the server's options. */
/** What a config's files hold, read: the TLS pair and the secrets (the primary reads them once and hands them to its workers). */
export interface ProxyMaterial {
  tls: { key: Buffer; cert: Buffer };
  secret: Buffer;
  previousSecret?: Buffer;
}

/** Reads the files the config names; throws (ETLSFILES, or the secret's own error) when one is missing or bad. */
export function loadProxyMaterial(config: ProxyConfig): ProxyMaterial {
  let tls: ProxyMaterial['tls'];
  try {
    tls = { key: readFileSync(config.tls.key), cert: readFileSync(config.tls.cert) };
  } catch (err) {
    throw new VolleyError('ETLSFILES', `cannot read the proxy's TLS files: ${(err as Error).message}`);
  }
  return {
    tls,
    secret: loadSecret({ file: config.secretFile, env: PROXY_SECRET_ENV }),
    previousSecret: loadPreviousSecret({ file: config.previousSecretFile, secretFile: config.secretFile }),
  };
}

export function proxyServerOptions(config: ProxyConfig, logger: ProxyServerOptions['logger'], material: ProxyMaterial = loadProxyMaterial(config)): ProxyServerOptions {
  return {
    name: config.name,
    listen: config.listen,
    tls: material.tls,
    secret: material.secret,
    previousSecret: material.previousSecret,
    allowFrom: config.allowFrom,
    sendingIps: config.sendingIps,
    idleTimeoutMs: config.idleTimeoutMs,
    maxTransactionsPerSession: config.maxTransactionsPerSession,
    handshakeTimeoutMs: config.handshakeTimeoutMs,
    clientIdleTimeoutMs: config.clientIdleTimeoutMs,
    mxTimeouts: { ...RFC5321_CLIENT_TIMEOUTS, ...config.mxTimeouts },
    mxTrust: config.mxTlsCaFile ? { file: config.mxTlsCaFile, context: mxTrust(config.mxTlsCaFile, 'mx_tls_ca_file') } : undefined,
    throttleMerge: config.throttleMerge,
    logger,
  };
}
