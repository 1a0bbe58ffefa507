import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import Ajv, { type ErrorObject } from 'ajv';
import { LineCounter, parseDocument, isMap, isSeq, type Node } from 'yaml';
import { CidrList } from '../cidr';
import { VolleyError } from '../errors';
import { parseDuration, parseSize } from '../units';
import { normaliseDrain, type RawDrain } from './drain';
import { normaliseMirror, type RawMirror } from './mirror';
import { converter, normaliseEvents, normaliseInbound, type RawEvents, type RawInbound } from './events';
import { notImplemented } from './not-implemented';
import { canonicalPolicy, normaliseMtaSts, normaliseResolver, normaliseTlsPolicies, normaliseTlsRpt, type RawMtaSts, type RawTlsRpt } from './tls';
import { configSchema } from './schema';
import type { BounceRuleConfig, TlsMode, VolleyConfig } from './types';

export interface ConfigIssue {
  file: string;
  line: number;
  column: number;
  /** Dotted path of the field, e.g. `smtp.listeners[0].port`. */
  field: string;
  message: string;
}

export class ConfigError extends VolleyError {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super('ECONFIG', issues.map(formatIssue).join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export function formatIssue(i: ConfigIssue): string {
  return `${i.file}:${i.line}:${i.column}: ${i.field || '(top level)'}: ${i.message}`;
}

const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(configSchema);

export function loadConfig(file: string): VolleyConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file, line: 0, column: 0, field: '', message: `cannot read: ${(err as Error).message}` }]);
  }
  return parseConfig(text, file);
}

type Path = (string | number)[];

/** Parses and validates config text; every problem is reported at once, each with its line. */
export function parseConfig(text: string, file = '<config>'): VolleyConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (path: Path, message: string): ConfigIssue => {
    const pos = locate(doc.contents, path, lineCounter);
    return { file, line: pos.line, column: pos.col, field: formatPath(path), message };
  };
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return { file, line: pos.line, column: pos.col, field: '', message: `YAML: ${e.message.split('\n')[0]}` };
      }),
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  if (!validate(raw)) {
    throw new ConfigError(
      (validate.errors ?? []).map((e) => {
        const path = errorPath(e);
        return at(path, (e.keyword === 'additionalProperties' && notImplemented(formatPath(path))) || describe(e));
      }),
    );
  }
  const issues: ConfigIssue[] = [];
  const config = normalise(raw as Raw, (path, message) => issues.push(at(path, message)));
  if (issues.length > 0) throw new ConfigError(issues);
  return config;
}

function errorPath(e: ErrorObject): Path {
  const path: Path = e.instancePath
    .split('/')
    .slice(1)
    .map((p) => (/^\d+$/.test(p) ? Number(p) : p.replace(/~1/g, '/').replace(/~0/g, '~')));
  if (e.keyword === 'additionalProperties') path.push(String(e.params.additionalProperty));
  return path;
}

function describe(e: ErrorObject): string {
  switch (e.keyword) {
    case 'additionalProperties':
      return `unknown field "${String(e.params.additionalProperty)}"`;
    case 'required':
      return `missing required field "${String(e.params.missingProperty)}"`;
    case 'enum':
      return `must be one of ${(e.params.allowedValues as unknown[]).join(', ')}`;
    case 'type':
      return `must be ${String(e.params.type).replace(',', ' or ')}`;
    case 'pattern':
      return e.params.pattern === '^scrypt\\$' ? 'must be a scrypt hash (volley config hash-password)' : `has an invalid format`;
    default:
      return e.message ?? 'is invalid';
  }
}

function formatPath(path: Path): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

function locate(root: unknown, path: Path, lc: LineCounter): { line: number; col: number } {
  let node = root as Node | null | undefined;
  let best = node?.range ? node.range[0] : 0;
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === key);
      if (!pair) break;
      const keyNode = pair.key as Node;
      if (keyNode.range) best = keyNode.range[0];
      node = pair.value as Node | null;
    } else if (isSeq(node) && typeof key === 'number') {
      node = node.items[key] as Node | undefined;
      if (node?.range) best = node.range[0];
    } else break;
  }
  return lc.linePos(best);
}

// The raw, validated shape (snake_case, units as written).
type Dur = string | number;
interface Raw {
  hostname: string;
  log?: { level?: string };
  smtp?: {
    listeners?: { name: string; port: number; address?: string; tls?: TlsMode; require_auth?: boolean }[];
    tls?: { cert: string; key: string };
    max_message_size?: Dur;
    max_recipients?: number;
    max_connections?: number;
    max_connections_per_client?: number;
    relay_from?: string[];
    trusted_proxies?: string[];
    socket_timeout?: Dur;
  };
  http?: { port?: number; address?: string; tls?: { cert: string; key: string }; max_body_size?: Dur; max_batch?: number; max_connections?: number; tokens?: { name: string; sha256: string }[] };
  admin?: { port?: number; address?: string; tokens?: { name: string; sha256: string }[]; health_listen?: { port: number; address?: string } };
  users?: { name: string; password: string }[];
  spool?: { segment_size?: Dur; fsync?: boolean; min_free?: Dur; reserve?: Dur };
  vmtas?: { name: string; ip: string; helo: string }[];
  pools?: { name: string; vmtas: { name: string; weight?: number }[] }[];
  default_pool?: string;
  routing?: { sender_domain: string; pool?: string; vmta?: string }[];
  routes?: { domain: string; host: string; port?: number }[];
  resolver?: { servers?: string[]; dnssec?: boolean };
  delivery?: { retry?: Dur[]; max_lifetime?: Dur; concurrency?: number; connect_timeout?: Dur; greeting_timeout?: Dur; dsn?: boolean; pipeline_transactions?: boolean; mx_address_limit?: number; mx_session_limit?: number; tls_policy?: string; tls_ca_file?: string };
  proxies?: { secret_file?: string; servers: { name: string; address: string; fingerprint?: string; ca_file?: string; sending_ips: string[] }[] };
  tls_policies?: { domain: string; policy: string }[];
  mta_sts?: RawMtaSts;
  tls_rpt?: RawTlsRpt;
  haproxy?: { mtas?: number; frontends: { sending_ip: string; address: string; proxy_protocol?: 'v1' | 'v2' }[] };
  bounce_rules?: { category: BounceRuleConfig['category']; code?: number; enhanced?: string; text?: string }[];
  events?: RawEvents;
  inbound?: RawInbound;
  drain?: RawDrain;
  mirror?: RawMirror;
  rollups?: { name: string; mx: string[] }[];
  throttles?: { vmta?: string; destination: string; max_connections?: number; max_messages_per_hour?: number }[];
  backoff?: { destination?: string; code?: number; text?: string; pause: Dur }[];
  dkim?: { domain: string; selector: string; algorithm?: 'rsa-sha256' | 'ed25519-sha256'; private_key_file: string; headers?: string[] }[];
}

type Report = (path: Path, message: string) => void;

function normalise(raw: Raw, report: Report): VolleyConfig {
  const dur = (v: Dur | undefined, dflt: number, path: Path): number => convert(v, dflt, path, parseDuration, report);
  const sz = (v: Dur | undefined, dflt: number, path: Path): number => convert(v, dflt, path, parseSize, report);
  const cidrs = (list: string[] | undefined, path: Path): string[] => {
    (list ?? []).forEach((entry, i) => {
      try {
        new CidrList([entry]);
      } catch (err) {
        report([...path, i], (err as Error).message);
      }
    });
    return list ?? [];
  };
  const smtp = raw.smtp ?? {};
  const http = raw.http ?? {};
  const vmtas = raw.vmtas ?? [];
  const pools = (raw.pools ?? []).map((p) => ({ name: p.name, vmtas: p.vmtas.map((v) => ({ name: v.name, weight: v.weight ?? 1 })) }));

  unique(vmtas.map((v) => v.name), ['vmtas'], 'VMTA', report);
  unique(pools.map((p) => p.name), ['pools'], 'pool', report);
  unique((smtp.listeners ?? []).map((l) => l.name), ['smtp', 'listeners'], 'listener', report);
  unique((raw.users ?? []).map((u) => u.name), ['users'], 'user', report);
  vmtas.forEach((v, i) => isIP(v.ip) || report(['vmtas', i, 'ip'], `"${v.ip}" is not an IP address`));
  const vmtaNames = new Set(vmtas.map((v) => v.name));
  const poolNames = new Set(pools.map((p) => p.name));
  pools.forEach((p, i) =>
    p.vmtas.forEach((v, j) => vmtaNames.has(v.name) || report(['pools', i, 'vmtas', j, 'name'], `no VMTA named "${v.name}"`)),
  );
  if (raw.default_pool !== undefined && !poolNames.has(raw.default_pool)) {
    report(['default_pool'], `no pool named "${raw.default_pool}"`);
  }
  (raw.routing ?? []).forEach((r, i) => {
    if (r.pool !== undefined && !poolNames.has(r.pool)) report(['routing', i, 'pool'], `no pool named "${r.pool}"`);
    if (r.vmta !== undefined && !vmtaNames.has(r.vmta)) report(['routing', i, 'vmta'], `no VMTA named "${r.vmta}"`);
  });

  return {
    hostname: raw.hostname,
    log: { level: raw.log?.level ?? 'info' },
    smtp: {
      listeners: (smtp.listeners ?? [{ name: 'smtp', port: 25 }]).map((l) => ({
        name: l.name,
        port: l.port,
        address: l.address ?? '0.0.0.0',
        tls: l.tls ?? 'starttls',
        requireAuth: l.require_auth ?? false,
      })),
      tls: smtp.tls,
      maxMessageSize: sz(smtp.max_message_size, 25 * 1024 * 1024, ['smtp', 'max_message_size']),
      maxRecipients: smtp.max_recipients ?? 1000,
      maxConnections: smtp.max_connections ?? 10_000,
      maxConnectionsPerClient: smtp.max_connections_per_client ?? 500,
      relayFrom: cidrs(smtp.relay_from, ['smtp', 'relay_from']),
      trustedProxies: cidrs(smtp.trusted_proxies, ['smtp', 'trusted_proxies']),
      socketTimeoutMs: dur(smtp.socket_timeout, 300_000, ['smtp', 'socket_timeout']),
    },
    http: {
      port: http.port ?? 8080,
      address: http.address ?? '0.0.0.0',
      tls: http.tls,
      maxBodySize: sz(http.max_body_size, 50 * 1024 * 1024, ['http', 'max_body_size']),
      maxBatch: http.max_batch ?? 1000,
      maxConnections: http.max_connections ?? 10_000,
      tokens: http.tokens ?? [],
    },
    admin: {
      port: raw.admin?.port ?? 8025,
      address: raw.admin?.address ?? '127.0.0.1',
      tokens: raw.admin?.tokens ?? [],
      healthListen: raw.admin?.health_listen && { port: raw.admin.health_listen.port, address: raw.admin.health_listen.address ?? '0.0.0.0' },
    },
    users: raw.users ?? [],
    spool: {
      segmentSize: sz(raw.spool?.segment_size, 64 * 1024 * 1024, ['spool', 'segment_size']),
      fsync: raw.spool?.fsync ?? true,
      minFree: minFree(raw.spool?.min_free, ['spool', 'min_free'], report),
      reserve: sz(raw.spool?.reserve, 64 * 1024 * 1024, ['spool', 'reserve']),
    },
    vmtas,
    pools,
    defaultPool: raw.default_pool,
    routing: (raw.routing ?? []).map((r) => ({ senderDomain: r.sender_domain.toLowerCase(), pool: r.pool, vmta: r.vmta })),
    routes: (raw.routes ?? []).map((r) => ({ domain: r.domain.toLowerCase(), host: r.host, port: r.port ?? 25 })),
    resolver: normaliseResolver(raw.resolver, report),
    delivery: {
      retryMs: (raw.delivery?.retry ?? ['1m', '5m', '15m', '30m', '1h', '2h', '4h']).map((d, i) =>
        dur(d, 60_000, ['delivery', 'retry', i]),
      ),
      maxLifetimeMs: dur(raw.delivery?.max_lifetime, 4 * 86_400_000, ['delivery', 'max_lifetime']),
      concurrency: raw.delivery?.concurrency ?? 500,
      connectTimeoutMs: dur(raw.delivery?.connect_timeout, 30_000, ['delivery', 'connect_timeout']),
      greetingTimeoutMs: dur(raw.delivery?.greeting_timeout, 300_000, ['delivery', 'greeting_timeout']),
      dsn: raw.delivery?.dsn ?? false,
      pipelineTransactions: raw.delivery?.pipeline_transactions ?? true,
      mxAddressLimit: raw.delivery?.mx_address_limit ?? 5,
      mxSessionLimit: raw.delivery?.mx_session_limit ?? 2,
      tlsPolicy: canonicalPolicy(raw.delivery?.tls_policy ?? 'auto'),
      tlsCaFile: raw.delivery?.tls_ca_file,
    },
    proxies: raw.proxies && {
      secretFile: raw.proxies.secret_file,
      servers: raw.proxies.servers.map((p, i) => {
        const m = /^(.+):(\d{1,5})$/.exec(p.address);
        if (!m) report(['proxies', 'servers', i, 'address'], `"${p.address}" is not host:port`);
        if (!p.fingerprint && !p.ca_file) report(['proxies', 'servers', i], 'needs a fingerprint or a ca_file: the MTA must know whom it talks to');
        p.sending_ips.forEach((ip, j) => isIP(ip) || report(['proxies', 'servers', i, 'sending_ips', j], `"${ip}" is not an IP address`));
        return { name: p.name, host: m?.[1] ?? p.address, port: Number(m?.[2] ?? 0), fingerprint: p.fingerprint, caFile: p.ca_file, sendingIps: p.sending_ips };
      }),
    },
    tlsPolicies: normaliseTlsPolicies(raw.tls_policies),
    mtaSts: normaliseMtaSts(raw.mta_sts, report),
    tlsRpt: normaliseTlsRpt(raw.tls_rpt, raw.hostname, report),
    haproxy: raw.haproxy && {
      mtas: raw.haproxy.mtas ?? 1,
      frontends: raw.haproxy.frontends.map((f, i) => {
        const m = /^(.+):(\d{1,5})$/.exec(f.address);
        if (!m) report(['haproxy', 'frontends', i, 'address'], `"${f.address}" is not host:port`);
        if (!isIP(f.sending_ip)) report(['haproxy', 'frontends', i, 'sending_ip'], `"${f.sending_ip}" is not an IP address`);
        return { sendingIp: f.sending_ip, host: m?.[1] ?? f.address, port: Number(m?.[2] ?? 0), proxyProtocol: f.proxy_protocol ?? 'v1' };
      }),
    },
    bounceRules: (raw.bounce_rules ?? []).map((r, i) => {
      for (const field of ['enhanced', 'text'] as const) {
        const v = r[field];
        if (v === undefined) continue;
        try {
          new RegExp(v, 'i');
        } catch (err) {
          report(['bounce_rules', i, field], `not a regular expression: ${(err as Error).message}`);
        }
      }
      return { category: r.category, code: r.code, enhanced: r.enhanced, text: r.text };
    }),
    events: normaliseEvents(raw.events, report),
    inbound: normaliseInbound(raw.inbound, poolNames, report),
    drain: normaliseDrain(raw.drain, report),
    mirror: normaliseMirror(raw.mirror, report),
    rollups: (raw.rollups ?? []).map((r) => ({ name: r.name, mx: r.mx.map((m) => m.toLowerCase().replace(/^\*?\.?/, '')) })),
    throttles: (raw.throttles ?? []).map((t, i) => {
      if (t.vmta !== undefined && !vmtaNames.has(t.vmta)) report(['throttles', i, 'vmta'], `no VMTA named "${t.vmta}"`);
      return { vmta: t.vmta, destination: t.destination.toLowerCase(), maxConnections: t.max_connections, maxMessagesPerHour: t.max_messages_per_hour };
    }),
    backoff: (raw.backoff ?? []).map((b, i) => {
      if (b.text !== undefined) {
        try {
          new RegExp(b.text, 'i');
        } catch (err) {
          report(['backoff', i, 'text'], `not a regular expression: ${(err as Error).message}`);
        }
      }
      return { destination: b.destination?.toLowerCase(), code: b.code, text: b.text, pauseMs: dur(b.pause, 600_000, ['backoff', i, 'pause']) };
    }),
    dkim: (raw.dkim ?? []).map((k) => ({
      domain: k.domain.toLowerCase(),
      selector: k.selector,
      algorithm: k.algorithm ?? 'rsa-sha256',
      privateKeyFile: k.private_key_file,
      headers: k.headers,
    })),
  };
}

/**
 * `spool.min_free`: a size, or a percentage of the volume. The default, 2 %,
 * is Postfix's idea (queue_minfree) sized for volumes of tens to hundreds of
 * GB: room for the records that finish what is queued, long before the last block.
 */
function minFree(v: Dur | undefined, path: Path, report: Report): { bytes: number } | { percent: number } {
  if (v === undefined) return { percent: 2 };
  const pct = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(v) : null;
  if (pct) {
    const percent = Number(pct[1]);
    if (percent < 100) return { percent };
    report(path, `"${v}" is not a percentage below 100`);
    return { percent: 2 };
  }
  return { bytes: convert(v, 0, path, parseSize, report) };
}

function convert(v: Dur | undefined, dflt: number, path: Path, parse: (v: Dur) => number, report: Report): number {
  return converter(report, parse)(v, dflt, path);
}

function unique(names: string[], path: Path, what: string, report: Report): void {
  const seen = new Set<string>();
  names.forEach((n, i) => {
    if (seen.has(n)) report([...path, i, 'name'], `duplicate ${what} name "${n}"`);
    seen.add(n);
  });
}
