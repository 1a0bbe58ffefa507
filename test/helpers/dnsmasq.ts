import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const DNSMASQ = '/usr/sbin/dnsmasq';

/** Record flags for dnsmasq, so tests read as zone data. */
export const rr = {
  mx: (domain: string, target: string, pref: number): string => `--mx-host=${domain},${target},${pref}`,
  /** A (or AAAA for an IPv6 address) record, with an optional TTL in seconds. */
  host: (name: string, ip: string, ttl?: number): string => `--host-record=${name},${ip}${ttl === undefined ? '' : `,${ttl}`}`,
  txt: (name: string, text: string): string => `--txt-record=${name},${text}`,
  cname: (alias: string, target: string): string => `--cname=${alias},${target}`,
};

/**
 * TXT records whose text holds commas (a TLS-RPT rua list): dnsmasq's command
 * line splits a --txt-record at every comma into separate strings, its config
 * file keeps a quoted one whole. Writes them to a file in `dir`; returns the flag.
 */
export function txtConf(dir: string, records: Record<string, string>): string {
  const file = join(dir, `txt-${Object.keys(records).join('_').slice(0, 60)}.conf`);
  writeFileSync(file, Object.entries(records).map(([name, text]) => `txt-record=${name},"${text.replace(/["\\]/g, '\\$&')}"\n`).join(''));
  return `--conf-file=${file}`;
}

const READY_NAME = 'ready.dnsmasq.invalid';

// Registered when a test file imports this module (hooks cannot be added from inside a test):
// whatever is still running when the file finishes is stopped.
const running = new Set<() => Promise<void>>();
if (typeof afterAll === 'function') afterAll(async () => Promise.all([...running].map((stop) => stop())));

export interface Dnsmasq {
  port: number;
  /** "127.0.0.1:PORT", for RouterOptions.servers. */
  server: string;
  /** Names asked about since start (or the last restart), one "TYPE name" per query, e.g. "MX a.test". Readiness probes excluded. */
  queries(): string[];
  /** Stops and starts again on the same port with other flags (what it answers changes; its log starts afresh). */
  restart(flags: string[]): Promise<void>;
  /** Stops it for good (also done in afterAll of the test file). */
  stop(): Promise<void>;
}

/** A UDP port that was free a moment ago (bind port 0, read it, close). */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * A private dnsmasq on 127.0.0.1 (UDP and TCP) answering only from `flags`
 * (see `rr`, plus e.g. `--local-ttl=N`, `--local=/test/` so unknown names in
 * .test get NXDOMAIN/NODATA instead of REFUSED). No upstream, no /etc/hosts,
 * no system config. Queries are logged to a private file for counting.
 * Stopped by stop() or, at the latest, in afterAll of the test file.
 */
export async function startDnsmasq(flags: string[]): Promise<Dnsmasq> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-dnsmasq-'));
  const logFile = join(dir, 'queries.log');
  let proc: ChildProcess | undefined;
  let port = 0;
  let output = '';

  const launch = async (recordFlags: string[], fixedPort?: number): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      port = fixedPort ?? (await freeUdpPort());
      rmSync(logFile, { force: true });
      output = '';
      const p = spawn(
        DNSMASQ,
        [
          '--no-daemon', '--no-resolv', '--no-hosts', '--bind-interfaces',
          '--listen-address=127.0.0.1', `--port=${port}`, '--conf-file=/dev/null',
          '--user=root', '--pid-file=', '--log-queries', `--log-facility=${logFile}`,
          `--txt-record=${READY_NAME},ready`,
          ...recordFlags,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      p.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      p.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
      const ready = await Promise.race([waitReady(port), exited.then(() => false)]);
      if (ready) {
        proc = p;
        return;
      }
      p.kill('SIGKILL');
      await exited;
      // The TCP side of a port found free for UDP may be taken: try another (unless the port is fixed).
      if (fixedPort !== undefined || attempt >= 4) throw new Error(`dnsmasq did not start on 127.0.0.1:${port}:\n${output}`);
    }
  };

  const stop = async (): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  };

  const dispose = async (): Promise<void> => {
    running.delete(dispose);
    await stop();
    rmSync(dir, { recursive: true, force: true });
  };
  running.add(dispose);
  await launch(flags);

  return {
    get port() {
      return port;
    },
    get server() {
      return `127.0.0.1:${port}`;
    },
    queries() {
      if (!existsSync(logFile)) return [];
      const out: string[] = [];
      for (const line of readFileSync(logFile, 'utf8').split('\n')) {
        const m = /(?:query|auth)\[(\w+)\] (\S+) from/.exec(line);
        if (m && m[2] !== READY_NAME) out.push(`${m[1]} ${m[2]}`);
      }
      return out;
    },
    async restart(newFlags: string[]) {
      const samePort = port;
      await stop();
      await launch(newFlags, samePort);
    },
    stop: dispose,
  };
}

/** Polls with a TXT query until dnsmasq answers anything (up to 5 s). */
async function waitReady(port: number): Promise<boolean> {
  const r = new Resolver({ timeout: 200, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  const until = Date.now() + 5000;
  while (Date.now() < until) {
    try {
      await r.resolveTxt(READY_NAME);
      return true;
    } catch (err) {
      // Any DNS answer (REFUSED from an authoritative-only instance, say) means it is up.
      const code = (err as { code?: string }).code;
      if (code !== 'ECONNREFUSED' && code !== 'ETIMEOUT') return true;
      await new Promise((res) => setTimeout(res, 50));
    }
  }
  return false;
}
