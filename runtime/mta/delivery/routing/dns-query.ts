import { createSocket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import { isIP, connect } from 'node:net';
import { domainToASCII } from 'node:url';

/*
 * A minimal stub-resolver query for one question (MX for routing; TLSA, A and
 * AAAA with DNSSEC for DANE), over UDP (TCP when the answer is truncated).
 *
 * Why our own: node's `Resolver.resolveMx()` returns no TTL (only resolve4/6 take
 * `{ ttl: true }`), and it hides the SOA of a negative answer, so a cache built
 * on it can only guess how long an MX answer stays valid; and node's resolver
 * neither sets the DO bit nor shows the AD flag, which DANE (RFC 7672) rests
 * on. One question, no recursion and no validation on our side (the configured
 * server recurses and, for DNSSEC questions, validates: RD is set, and DO asks
 * it to report the result in AD), and only the record types we need (MX,
 * CNAME, SOA, TLSA, A, AAAA) keep this to a small parser.
 */

export interface MxRecord {
  /** Lower-case, no trailing dot; "" for the root (RFC 7505 null MX). */
  exchange: string;
  preference: number;
  /** Seconds. */
  ttl: number;
}

export interface MxAnswer {
  /** NOERROR (possibly with no MX: NODATA) or NXDOMAIN; other rcodes throw. */
  rcode: 'NOERROR' | 'NXDOMAIN';
  /** MX records of the name (after following CNAMEs in the answer). */
  mx: MxRecord[];
  /** Minimum TTL of the records used (MX and CNAMEs), seconds; undefined when there are none. */
  ttl?: number;
  /** For a negative answer, min(SOA TTL, SOA minimum) from the authority section (RFC 2308), seconds. */
  negativeTtl?: number;
  /** The resolver's AD flag (asked with `dnssec`): the MX RRset, or its absence, is DNSSEC-validated (RFC 7672 2.2.1). */
  authenticated: boolean;
}

/** Codes match node's dns error codes so callers can treat both alike. */
export class DnsQueryError extends Error {
  constructor(
    readonly code: 'ETIMEOUT' | 'ECONNREFUSED' | 'ESERVFAIL' | 'EREFUSED' | 'ENOTIMP' | 'EFORMERR' | 'EBADRESP' | 'EBADNAME' | 'ECONNECTION',
    message: string,
    /** The server's RFC 8914 Extended DNS Error, when it sent one (a validating resolver says why it answered SERVFAIL: 6 = DNSSEC Bogus). */
    readonly extendedError?: { infoCode: number; text: string },
  ) {
    super(message);
  }
}

export interface QueryOptions {
  /** Per attempt, ms. */
  timeoutMs: number;
  /** Rounds over the server list. */
  tries: number;
}

export const TYPE_A = 1;
export const TYPE_CNAME = 5;
const TYPE_SOA = 6;
export const TYPE_MX = 15;
export const TYPE_AAAA = 28;
const TYPE_OPT = 41;
export const TYPE_TLSA = 52;
const CLASS_IN = 1;
const EDNS_UDP_SIZE = 1232;
/** EDNS option code of an Extended DNS Error (RFC 8914). */
const OPTION_EDE = 15;

/** Asks the servers in turn ("ip", "ip:port", "[v6]:port"), each round `tries` times, for the MX records of `name`. */
export async function queryMx(name: string, servers: string[], options: QueryOptions & { dnssec?: boolean }): Promise<MxAnswer> {
  const qname = normalizeName(name);
  return ask(qname, TYPE_MX, options.dnssec ?? false, servers, options, (msg) => parseMxResponse(msg, qname));
}

/** One record of the asked type at the end of the answer's CNAME chain. */
export interface DnsRecord {
  /** Seconds. */
  ttl: number;
  /** The RDATA as sent: for types without names in them (A, AAAA, TLSA); MX has queryMx (its names may be compressed). */
  data: Buffer;
}

export interface DnsAnswer {
  /** NOERROR (possibly with no record: NODATA) or NXDOMAIN; other rcodes throw. */
  rcode: 'NOERROR' | 'NXDOMAIN';
  /**
   * The AD flag: the resolver validated the whole answer (CNAMEs, records or
   * the proof that there are none) with DNSSEC. Only a validating resolver that
   * was asked with DO sets it; false means insecure, never bogus (a bogus
   * answer is a SERVFAIL, thrown as ESERVFAIL).
   */
  authenticated: boolean;
  /** The name the records belong to: `name` after following the CNAMEs in the answer. */
  canonicalName: string;
  records: DnsRecord[];
  /** Minimum TTL of the records and CNAMEs used, seconds; undefined when there are none. */
  ttl?: number;
  /** For an answer without records, min(SOA TTL, SOA minimum) from the authority section (RFC 2308), seconds. */
  negativeTtl?: number;
}

/**
 * Asks for the records of one type, with the DO bit when `dnssec` (so that a
 * validating resolver reports in AD whether it validated the answer). CNAMEs
 * in the answer are followed (up to 16); a CNAME whose target the answer does
 * not include gives no records, as the resolver recursed for us already.
 */
export async function queryDns(name: string, type: number, servers: string[], options: QueryOptions & { dnssec: boolean }): Promise<DnsAnswer> {
  const qname = normalizeName(name);
  return ask(qname, type, options.dnssec, servers, options, (msg) => {
    const { rcode, authenticated, canonicalName, records, ttl, authority } = parseAnswer(msg, qname, type);
    const negativeTtl = records.length === 0 ? soaNegativeTtl(msg, authority) : undefined;
    return { rcode, authenticated, canonicalName, ttl, negativeTtl, records: records.map((r) => ({ ttl: r.ttl, data: Buffer.from(msg.subarray(r.rdata, r.rdata + r.rdlength)) })) };
  });
}

/** The loop shared by every question: servers in turn, `tries` rounds, a malformed or failed answer moves to the next server. */
async function ask<T>(qname: string, qtype: number, dnssec: boolean, servers: string[], options: QueryOptions, parse: (msg: Buffer) => T): Promise<T> {
  if (servers.length === 0) throw new DnsQueryError('ECONNECTION', 'no DNS server configured');
  let last: DnsQueryError | undefined;
  for (let round = 0; round < Math.max(1, options.tries); round++) {
    for (const server of servers) {
      const { host, port } = parseServer(server);
      try {
        let response: Buffer;
        try {
          response = await exchange(host, port, qname, qtype, true, dnssec, options.timeoutMs);
        } catch (err) {
          // A server that does not speak EDNS may answer FORMERR: ask it again plainly.
          if (err instanceof DnsQueryError && err.code === 'EFORMERR') response = await exchange(host, port, qname, qtype, false, dnssec, options.timeoutMs);
          else throw err;
        }
        try {
          return parse(response);
        } catch (err) {
          // A malformed answer (reads past the buffer): try the next server as for any bad answer.
          throw err instanceof DnsQueryError ? err : new DnsQueryError('EBADRESP', `${server}: malformed answer for ${typeName(qtype)} ${qname}: ${(err as Error).message}`);
        }
      } catch (err) {
        if (!(err instanceof DnsQueryError)) throw err;
        if (err.code === 'EBADNAME') throw err;
        last = err;
      }
    }
  }
  throw last ?? new DnsQueryError('ECONNECTION', 'no answer');
}

/** A record type's mnemonic, for messages. */
export function typeName(type: number): string {
  const names: Record<number, string> = { [TYPE_A]: 'A', [TYPE_CNAME]: 'CNAME', [TYPE_MX]: 'MX', [TYPE_AAAA]: 'AAAA', [TYPE_TLSA]: 'TLSA' };
  return names[type] ?? `TYPE${type}`;
}

function normalizeName(name: string): string {
  let n = name.trim().toLowerCase();
  if (n.endsWith('.')) n = n.slice(0, -1);
  const ascii = /^[\x00-\x7f]*$/.test(n) ? n : domainToASCII(n);
  if (ascii === '' || ascii.length > 253 || ascii.split('.').some((l) => l.length === 0 || l.length > 63)) throw new DnsQueryError('EBADNAME', `bad domain name "${name}"`);
  return ascii;
}

export function parseServer(server: string): { host: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(server);
  if (bracketed) return { host: bracketed[1], port: bracketed[2] ? Number(bracketed[2]) : 53 };
  if (isIP(server)) return { host: server, port: 53 };
  const i = server.lastIndexOf(':');
  if (i > 0 && isIP(server.slice(0, i)) === 4) return { host: server.slice(0, i), port: Number(server.slice(i + 1)) };
  throw new DnsQueryError('ECONNECTION', `bad DNS server "${server}"`);
}

export function buildQuery(id: number, qname: string, qtype: number, edns: boolean, dnssec: boolean): Buffer {
  const labels = qname.split('.').map((l) => Buffer.from(l, 'ascii'));
  const nameLen = labels.reduce((n, l) => n + 1 + l.length, 1);
  const buf = Buffer.alloc(12 + nameLen + 4 + (edns ? 11 : 0));
  buf.writeUInt16BE(id, 0);
  // Standard query, RD. Without EDNS there is no DO bit: AD in the query asks for AD in the answer instead (RFC 6840 5.7).
  buf.writeUInt16BE(0x0100 | (dnssec && !edns ? 0x0020 : 0), 2);
  buf.writeUInt16BE(1, 4); // QDCOUNT
  buf.writeUInt16BE(edns ? 1 : 0, 10); // ARCOUNT
  let o = 12;
  for (const l of labels) {
    buf[o++] = l.length;
    l.copy(buf, o);
    o += l.length;
  }
  buf[o++] = 0;
  buf.writeUInt16BE(qtype, o);
  buf.writeUInt16BE(CLASS_IN, o + 2);
  o += 4;
  if (edns) {
    // OPT pseudo-RR: root name, type 41, class = UDP payload size, TTL = extended rcode, version 0 and flags (DO is the top flag bit), no options.
    buf[o++] = 0;
    buf.writeUInt16BE(TYPE_OPT, o);
    buf.writeUInt16BE(EDNS_UDP_SIZE, o + 2);
    if (dnssec) buf.writeUInt32BE(0x00008000, o + 4);
  }
  return buf;
}

/** One query to one server: UDP, then TCP if the UDP answer is truncated. Returns a response with rcode NOERROR or NXDOMAIN. */
async function exchange(host: string, port: number, qname: string, qtype: number, edns: boolean, dnssec: boolean, timeoutMs: number): Promise<Buffer> {
  const id = randomInt(0, 0x10000);
  const query = buildQuery(id, qname, qtype, edns, dnssec);
  let response = await udpExchange(host, port, query, qname, qtype, timeoutMs);
  if (response.readUInt16BE(2) & 0x0200) response = await tcpExchange(host, port, query, qname, qtype, timeoutMs);
  const rcode = response.readUInt16BE(2) & 0x000f;
  const codes: Record<number, DnsQueryError['code']> = { 1: 'EFORMERR', 2: 'ESERVFAIL', 4: 'ENOTIMP', 5: 'EREFUSED' };
  if (rcode !== 0 && rcode !== 3) {
    const ede = extendedError(response);
    const why = ede ? ` (extended error ${ede.infoCode}${ede.text ? `: ${ede.text}` : ''})` : '';
    throw new DnsQueryError(codes[rcode] ?? 'EBADRESP', `${host}:${port} answered rcode ${rcode} for ${typeName(qtype)} ${qname}${why}`, ede);
  }
  return response;
}

/** The first Extended DNS Error (RFC 8914) in the OPT record of `msg`, if any; undefined for anything unreadable (it only explains an error). */
export function extendedError(msg: Buffer): { infoCode: number; text: string } | undefined {
  try {
    let o = readName(msg, 12).end + 4;
    const rrs: Rr[] = [];
    o = readRrs(msg, o, msg.readUInt16BE(6) + msg.readUInt16BE(8), []);
    readRrs(msg, o, msg.readUInt16BE(10), rrs);
    const opt = rrs.find((r) => r.type === TYPE_OPT);
    if (!opt) return undefined;
    for (let p = opt.rdata; p + 4 <= opt.rdata + opt.rdlength; ) {
      const code = msg.readUInt16BE(p);
      const len = msg.readUInt16BE(p + 2);
      if (code === OPTION_EDE && len >= 2 && p + 4 + len <= msg.length) return { infoCode: msg.readUInt16BE(p + 4), text: msg.toString('utf8', p + 6, p + 4 + len) };
      p += 4 + len;
    }
  } catch {
    // unreadable: no extended error to report
  }
  return undefined;
}

/** Whether `msg` answers our query: same id, QR set, the same single question. */
function matches(msg: Buffer, query: Buffer, qname: string, qtype: number): boolean {
  if (msg.length < 12 || msg.readUInt16BE(0) !== query.readUInt16BE(0) || !(msg.readUInt16BE(2) & 0x8000)) return false;
  if (msg.readUInt16BE(4) !== 1) return false;
  try {
    const q = readName(msg, 12);
    return q.name === qname && msg.readUInt16BE(q.end) === qtype && msg.readUInt16BE(q.end + 2) === CLASS_IN;
  } catch {
    return false;
  }
}

function udpExchange(host: string, port: number, query: Buffer, qname: string, qtype: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // Connected, so only the server's datagrams reach us and an ICMP port-unreachable surfaces as ECONNREFUSED.
    const sock = createSocket(isIP(host) === 6 ? 'udp6' : 'udp4');
    let done = false;
    const finish = (err: DnsQueryError | undefined, msg?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(msg!);
    };
    const timer = setTimeout(() => finish(new DnsQueryError('ETIMEOUT', `no answer from ${host}:${port} in ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err: NodeJS.ErrnoException) =>
      finish(new DnsQueryError(err.code === 'ECONNREFUSED' ? 'ECONNREFUSED' : 'ECONNECTION', `${host}:${port}: ${err.message}`)),
    );
    sock.on('message', (msg) => {
      if (matches(msg, query, qname, qtype)) finish(undefined, msg);
      // else: a stray or spoofed datagram; keep waiting for ours.
    });
    sock.connect(port, host, () => sock.send(query));
  });
}

function tcpExchange(host: string, port: number, query: Buffer, qname: string, qtype: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port });
    let data = Buffer.alloc(0);
    let done = false;
    const finish = (err: DnsQueryError | undefined, msg?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(msg!);
    };
    const timer = setTimeout(() => finish(new DnsQueryError('ETIMEOUT', `no TCP answer from ${host}:${port} in ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err: NodeJS.ErrnoException) =>
      finish(new DnsQueryError(err.code === 'ECONNREFUSED' ? 'ECONNREFUSED' : 'ECONNECTION', `${host}:${port} (tcp): ${err.message}`)),
    );
    sock.on('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(query.length);
      sock.write(Buffer.concat([len, query]));
    });
    sock.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (data.length >= 2 && data.length >= 2 + data.readUInt16BE(0)) {
        const msg = data.subarray(2, 2 + data.readUInt16BE(0));
        finish(matches(msg, query, qname, qtype) ? undefined : new DnsQueryError('EBADRESP', `${host}:${port} (tcp): answer does not match the query`), msg);
      }
    });
    sock.on('end', () => finish(new DnsQueryError('ECONNECTION', `${host}:${port} (tcp): closed before answering`)));
  });
}

/** Reads a possibly compressed name at `offset`: the name (lower-case, no trailing dot) and where the field ends. */
function readName(msg: Buffer, offset: number): { name: string; end: number } {
  const labels: string[] = [];
  let o = offset;
  let end = -1;
  for (let jumps = 0; ; ) {
    if (o >= msg.length) throw new DnsQueryError('EBADRESP', 'name runs past the message');
    const len = msg[o];
    if (len === 0) {
      if (end < 0) end = o + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (o + 1 >= msg.length || ++jumps > 32) throw new DnsQueryError('EBADRESP', 'bad compression pointer');
      if (end < 0) end = o + 2;
      o = ((len & 0x3f) << 8) | msg[o + 1];
      continue;
    }
    if (len & 0xc0 || o + 1 + len > msg.length) throw new DnsQueryError('EBADRESP', 'bad label');
    labels.push(msg.toString('latin1', o + 1, o + 1 + len).toLowerCase());
    o += 1 + len;
  }
  return { name: labels.join('.'), end };
}

interface Rr {
  name: string;
  type: number;
  ttl: number;
  rdata: number;
  rdlength: number;
}

function readRrs(msg: Buffer, offset: number, count: number, out: Rr[]): number {
  let o = offset;
  for (let i = 0; i < count; i++) {
    const n = readName(msg, o);
    o = n.end;
    if (o + 10 > msg.length) throw new DnsQueryError('EBADRESP', 'truncated record');
    const type = msg.readUInt16BE(o);
    const raw = msg.readUInt32BE(o + 4);
    const rdlength = msg.readUInt16BE(o + 8);
    if (o + 10 + rdlength > msg.length) throw new DnsQueryError('EBADRESP', 'truncated rdata');
    // RFC 2181 8: a TTL with the top bit set is treated as zero.
    out.push({ name: n.name, type, ttl: raw > 0x7fffffff ? 0 : raw, rdata: o + 10, rdlength });
    o += 10 + rdlength;
  }
  return o;
}

/** The records of `qtype` at the end of the answer's CNAME chain, the AD flag, and the authority section (for a negative answer's SOA). */
interface ParsedAnswer extends Omit<DnsAnswer, 'records'> {
  records: Rr[];
  authority: Rr[];
  /** Minimum TTL of the CNAMEs followed. */
  cnameTtl?: number;
}

function parseAnswer(msg: Buffer, qname: string, qtype: number): ParsedAnswer {
  const rcode = msg.readUInt16BE(2) & 0x000f;
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  let o = readName(msg, 12).end + 4;
  const answers: Rr[] = [];
  const authority: Rr[] = [];
  o = readRrs(msg, o, an, answers);
  readRrs(msg, o, ns, authority);

  // Follow a CNAME chain inside the answer; its TTLs bound the answer's lifetime.
  let current = qname;
  let ttl: number | undefined;
  // (A CNAME question asks for the first link itself.)
  for (let hops = 0; hops < 16 && qtype !== TYPE_CNAME; hops++) {
    const cname = answers.find((r) => r.type === TYPE_CNAME && r.name === current);
    if (!cname) break;
    ttl = Math.min(ttl ?? Infinity, cname.ttl);
    current = readName(msg, cname.rdata).name;
  }
  const cnameTtl = ttl;
  const records: Rr[] = [];
  for (const r of answers) {
    if (r.type !== qtype || r.name !== current) continue;
    records.push(r);
    ttl = Math.min(ttl ?? Infinity, r.ttl);
  }
  const authenticated = (msg.readUInt16BE(2) & 0x0020) !== 0;
  return { rcode: rcode === 3 ? 'NXDOMAIN' : 'NOERROR', authenticated, canonicalName: current, records, ttl, authority, cnameTtl };
}

export function parseMxResponse(msg: Buffer, qname: string): MxAnswer {
  const answer = parseAnswer(msg, qname, TYPE_MX);
  const mx: MxRecord[] = [];
  // The CNAMEs' TTLs and those of the MX records kept (one too short to be an MX does not count).
  let ttl = answer.cnameTtl;
  for (const r of answer.records) {
    if (r.rdlength < 3) continue;
    mx.push({ preference: msg.readUInt16BE(r.rdata), exchange: readName(msg, r.rdata + 2).name, ttl: r.ttl });
    ttl = Math.min(ttl ?? Infinity, r.ttl);
  }
  const negativeTtl = mx.length === 0 ? soaNegativeTtl(msg, answer.authority) : undefined;
  return { rcode: answer.rcode, mx, ttl, negativeTtl, authenticated: answer.authenticated };
}

/** How long a negative answer holds: min(SOA TTL, SOA minimum) of the authority section's SOA (RFC 2308 5), seconds; undefined without one. */
function soaNegativeTtl(msg: Buffer, authority: Rr[]): number | undefined {
  const soa = authority.find((r) => r.type === TYPE_SOA);
  if (!soa) return undefined;
  const names = readName(msg, readName(msg, soa.rdata).end).end; // skip MNAME, RNAME
  return names + 20 <= soa.rdata + soa.rdlength ? Math.min(soa.ttl, msg.readUInt32BE(names + 16)) : undefined;
}
