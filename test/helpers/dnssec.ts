// A DNSSEC test world on loopback: Debian's bind9 serves a zone signed with
// dnssec-signzone (plus an unsigned child zone delegated without DS), and
// unbound validates it with the zone's KSK as its only trust anchor, the way
// a DANE-capable MTA's resolver does. Both run unprivileged-port, in their
// own temp dir with their own config, and are killed by pid (stop() or, at
// the latest, afterAll of the test file). The host's own bind/unbound config
// and port 53 are never touched.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeUdpPort } from './dnsmasq';

export const NAMED = '/usr/sbin/named';
export const UNBOUND = '/usr/sbin/unbound';

/** The signed zone (its KSK is unbound's trust anchor). */
export const SIGNED_ZONE = 'dane.test';
/** A child of SIGNED_ZONE delegated without a DS record and not signed: its answers are INSECURE. */
export const INSECURE_ZONE = `insecure.${SIGNED_ZONE}`;

/**
 * The zones' contents. Each line is `<name> <TYPE> <rdata…>`, the name
 * relative to its zone (`@` for the apex); every record gets a TTL of 300 s.
 * SOA, NS and the DNSKEYs are added.
 */
export interface DnssecZones {
  /** Records of SIGNED_ZONE, signed: SECURE answers. */
  signed: string[];
  /**
   * Records of SIGNED_ZONE signed with one value and served with another (the
   * served line replaces every record of that name and type after signing):
   * their signature fails, so the validating resolver answers SERVFAIL (BOGUS).
   */
  bogus?: Array<{ signed: string; served: string }>;
  /** Records of INSECURE_ZONE (unsigned, no DS in the parent): INSECURE answers. */
  insecure?: string[];
}

export interface DnssecWorld {
  /** The validating resolver (unbound), "127.0.0.1:PORT": what the MTA is configured with. */
  resolver: string;
  /** The authoritative server (bind9), "127.0.0.1:PORT": answers without validation, for checks. */
  authority: string;
  /** Stops both (also done in afterAll of the test file). */
  stop(): Promise<void>;
}

/** The TLSA rdata ("3 1 1 <hex>" by default: DANE-EE, SPKI, SHA-256) that matches a PEM certificate. */
export function tlsaFor(certPem: string | Buffer, usage = 3, selector = 1, matchingType = 1): string {
  const cert = new X509Certificate(certPem);
  const selected = selector === 1 ? cert.publicKey.export({ type: 'spki', format: 'der' }) : cert.raw;
  const data = matchingType === 0 ? selected : createHash(matchingType === 2 ? 'sha512' : 'sha256').update(selected).digest();
  return `${usage} ${selector} ${matchingType} ${data.toString('hex')}`;
}

// Registered when a test file imports this module (hooks cannot be added from inside a test).
const running = new Set<() => Promise<void>>();
if (typeof afterAll === 'function') afterAll(async () => Promise.all([...running].map((stop) => stop())));

/** Signs the zones, starts bind9 on them and unbound in front of it, and returns once unbound answers. */
export async function startDnssec(zones: DnssecZones): Promise<DnssecWorld> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-dnssec-'));
  const procs: ChildProcess[] = [];
  const dispose = async (): Promise<void> => {
    running.delete(dispose);
    await Promise.all(procs.map(stopProcess));
    rmSync(dir, { recursive: true, force: true });
  };
  running.add(dispose);
  try {
    const ksk = signZones(dir, zones);
    const named = await startServer(dir, procs, 'named', (port) => {
      writeFileSync(join(dir, 'named.conf'), namedConf(dir, port));
      return [NAMED, ['-g', '-4', '-n', '1', '-c', join(dir, 'named.conf')]];
    });
    const unbound = await startServer(dir, procs, 'unbound', (port) => {
      writeFileSync(join(dir, 'unbound.conf'), unboundConf(dir, port, ksk, named));
      return [UNBOUND, ['-d', '-c', join(dir, 'unbound.conf')]];
    });
    return { resolver: `127.0.0.1:${unbound}`, authority: `127.0.0.1:${named}`, stop: dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}

function fqdn(name: string, zone: string): string {
  return name === '@' ? `${zone}.` : name.endsWith('.') ? name : `${name}.${zone}.`;
}

/** `<name> <TYPE> <rdata…>` → a master-file line with the zone's TTL and class. */
function zoneLine(line: string, zone: string): { owner: string; type: string; text: string } {
  const m = /^(\S+)\s+([A-Za-z0-9]+)\s+(.+)$/.exec(line.trim());
  if (!m) throw new Error(`dnssec fixture: "${line}" is not "<name> <TYPE> <rdata>"`);
  const owner = fqdn(m[1], zone);
  const type = m[2].toUpperCase();
  return { owner, type, text: `${owner} 300 IN ${type} ${m[3]}` };
}

function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dnssec fixture: ${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** Writes both zone files (the signed one with its bogus records swapped in after signing) and returns the KSK file for unbound. */
function signZones(dir: string, zones: DnssecZones): string {
  const z = SIGNED_ZONE;
  run('dnssec-keygen', ['-q', '-K', dir, '-a', 'ECDSAP256SHA256', '-f', 'KSK', z], dir);
  run('dnssec-keygen', ['-q', '-K', dir, '-a', 'ECDSAP256SHA256', z], dir);
  const keys = readdirSync(dir).filter((f) => f.endsWith('.key'));
  const ksk = keys.find((f) => / 257 3 /.test(readFileSync(join(dir, f), 'utf8')));
  if (!ksk) throw new Error('dnssec fixture: dnssec-keygen made no KSK');

  const bogus = zones.bogus ?? [];
  const lines = [
    `$TTL 300`,
    `${z}. 300 IN SOA ns.${z}. hostmaster.${z}. 1 3600 600 86400 60`,
    `${z}. 300 IN NS ns.${z}.`,
    `ns.${z}. 300 IN A 127.0.0.1`,
    // The child is delegated (NS, glue) without DS: validators prove the DS absent and treat it as insecure.
    `${INSECURE_ZONE}. 300 IN NS ns.${INSECURE_ZONE}.`,
    `ns.${INSECURE_ZONE}. 300 IN A 127.0.0.1`,
    ...[...zones.signed, ...bogus.map((b) => b.signed)].map((l) => zoneLine(l, z).text),
    ...keys.map((k) => `$INCLUDE ${join(dir, k)}`),
  ];
  writeFileSync(join(dir, 'signed.zone'), lines.join('\n') + '\n');
  // -O full: one record per line with its owner spelled out, so the bogus swap below is a line filter.
  run('dnssec-signzone', ['-q', '-K', dir, '-o', z, '-O', 'full', '-f', join(dir, 'signed.zone.signed'), join(dir, 'signed.zone')], dir);

  let signed = readFileSync(join(dir, 'signed.zone.signed'), 'utf8').split('\n');
  for (const b of bogus) {
    const served = zoneLine(b.served, z);
    signed = signed.filter((l) => {
      const f = l.split(/\s+/);
      return !(f[0] === served.owner && f[2] === 'IN' && f[3] === served.type);
    });
  }
  signed.push(...bogus.map((b) => zoneLine(b.served, z).text));
  writeFileSync(join(dir, 'signed.zone.signed'), signed.join('\n') + '\n');

  const child = [
    `$TTL 300`,
    `${INSECURE_ZONE}. 300 IN SOA ns.${INSECURE_ZONE}. hostmaster.${z}. 1 3600 600 86400 60`,
    `${INSECURE_ZONE}. 300 IN NS ns.${INSECURE_ZONE}.`,
    `ns.${INSECURE_ZONE}. 300 IN A 127.0.0.1`,
    ...(zones.insecure ?? []).map((l) => zoneLine(l, INSECURE_ZONE).text),
  ];
  writeFileSync(join(dir, 'insecure.zone'), child.join('\n') + '\n');
  return join(dir, ksk);
}

function namedConf(dir: string, port: number): string {
  return `options {
  directory "${dir}";
  listen-on port ${port} { 127.0.0.1; };
  listen-on-v6 { none; };
  pid-file none;
  session-keyfile none;
  recursion no;
  dnssec-validation no;
  notify no;
  allow-query { 127.0.0.0/8; };
};
controls { };
zone "${SIGNED_ZONE}" { type primary; file "signed.zone.signed"; };
zone "${INSECURE_ZONE}" { type primary; file "insecure.zone"; };
`;
}

/**
 * unbound validating with the KSK as its only trust anchor; both zones are
 * stub zones on bind9's port (a delegation would send unbound to port 53), and
 * every other name is refused, so nothing leaves the machine.
 */
function unboundConf(dir: string, port: number, ksk: string, namedPort: number): string {
  return `server:
  interface: 127.0.0.1@${port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "${dir}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  val-log-level: 2
  num-threads: 1
  do-ip6: no
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "validator iterator"
  trust-anchor-file: "${ksk}"
  trust-anchor-signaling: no
  qname-minimisation: no
  ede: yes
  local-zone: "." refuse
  local-zone: "${SIGNED_ZONE}." transparent
stub-zone:
  name: "${SIGNED_ZONE}."
  stub-addr: 127.0.0.1@${namedPort}
stub-zone:
  name: "${INSECURE_ZONE}."
  stub-addr: 127.0.0.1@${namedPort}
remote-control:
  control-enable: no
`;
}

/** Lines the servers print once they serve (named: "running"; unbound: "start of service"), or that say a port was taken. */
const READY = /\brunning$|start of service/m;
const PORT_TAKEN = /address in use|could not listen|can't bind socket/i;

/**
 * Starts one server on a free port, waiting (on its output, not by polling)
 * for it to say it serves; a port taken on the TCP side moves to another one.
 * Then one SOA query through it confirms it answers for the zone.
 */
async function startServer(dir: string, procs: ChildProcess[], name: string, command: (port: number) => [string, string[]]): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = await freeUdpPort();
    const [bin, args] = command(port);
    const p = spawn(bin, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(p);
    let output = '';
    const outcome = await new Promise<'ready' | 'taken' | 'failed'>((resolve) => {
      // Startup takes well under a second; this only keeps a wedged server from hanging the test file.
      const timer = setTimeout(() => resolve('failed'), 15_000);
      const seen = (d: Buffer): void => {
        output += d.toString();
        if (PORT_TAKEN.test(output)) done('taken');
        else if (READY.test(output)) done('ready');
      };
      const done = (r: 'ready' | 'taken' | 'failed'): void => {
        clearTimeout(timer);
        p.stdout!.off('data', seen);
        p.stderr!.off('data', seen);
        p.off('exit', exited);
        resolve(r);
      };
      const exited = (): void => done(PORT_TAKEN.test(output) ? 'taken' : 'failed');
      p.stdout!.on('data', seen);
      p.stderr!.on('data', seen);
      p.once('exit', exited);
    });
    // Keep reading so a chatty server never blocks on a full pipe.
    p.stdout!.resume();
    p.stderr!.resume();
    if (outcome === 'ready' && (await answersSoa(port))) return port;
    await stopProcess(p);
    procs.splice(procs.indexOf(p), 1);
    if (outcome === 'failed' || attempt >= 4) throw new Error(`dnssec fixture: ${name} did not start on 127.0.0.1:${port}:\n${output}`);
  }
}

async function answersSoa(port: number): Promise<boolean> {
  const r = new Resolver({ timeout: 2000, tries: 2 });
  r.setServers([`127.0.0.1:${port}`]);
  try {
    await r.resolveSoa(SIGNED_ZONE);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM, SIGKILL if it lingers; only ever our own child, by its pid. */
async function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(timer);
}
