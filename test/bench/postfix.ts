/**
 * A private, otherwise-default Postfix instance for benchmarks and tests, and the two Postfix
 * baseline measurements the Volley benchmark compares against.
 *
 * The instance lives in its own temp directory under /var/tmp (config, queue, data, log), has
 * its own master process (configuration passed with `postfix -c DIR`), listens on 127.0.0.1 on
 * a high port, and never touches /etc/postfix or /var/spool/postfix. It is always stopped:
 * `postfix -c DIR stop`, then any process whose environment says MAIL_CONFIG=DIR is killed,
 * then the directory is removed; the same runs synchronously on process exit and on
 * SIGINT/SIGTERM/SIGHUP. Needs root (Postfix's master must start as root).
 *
 * main.cf starts EMPTY, i.e. every parameter is Postfix's compiled-in default (`postconf -d`),
 * not Debian's /usr/share/postfix/main.cf.dist (which sets its own mynetworks, inet_protocols,
 * smtpd_banner...). These are the ONLY deviations, and why:
 *
 *   compatibility_level = 3.7      The compiled default is 0 (backwards-compatibility mode,
 *                                  with old defaults and a warning per use); 3.7 is this
 *                                  Postfix's (3.7.11) current defaults, as a new install has.
 *   queue_directory = DIR/spool    Private queue: must not share the system one.
 *   data_directory  = DIR/data     Private lock/cache files (master.lock lives here).
 *   inet_interfaces = 127.0.0.1    Loopback only (default "all"). The smtpd listener is on
 *                                  127.0.0.1:PORT anyway; this keeps every inet socket local.
 *   inet_protocols  = ipv4         The load is IPv4 loopback; avoids IPv6 sockets/lookups
 *                                  (Debian's own main.cf.dist sets the same).
 *   mynetworks = 127.0.0.0/8       So smtp-source on loopback may relay. (At level 3.7 the
 *                                  default is mynetworks_style=host: this host's own addresses,
 *                                  127.0.0.1 among them; set explicitly to the whole /8.)
 *   alias_maps = alias_database = hash:DIR/etc/aliases
 *                                  The default is "hash:/etc/aliases, nis:mail.aliases"; here
 *                                  /etc/aliases.db doesn't exist (a packaged install builds it
 *                                  with newaliases), so every new smtpd logged an error and a
 *                                  NIS warning. A private copy of /etc/aliases, built with
 *                                  postalias(1), is what a normal install has, without NIS
 *                                  (Debian's own main.cf drops NIS the same way).
 *   maillog_file = DIR/maillog     No syslog daemon here; the log is read for diagnostics.
 *                                  Logging via postlogd(8) costs about what syslog would.
 *                                  (That is why DIR is under /var: maillog_file_prefixes'
 *                                  default only allows /var and /dev/stdout.)
 *   Mode "relay" (and intake with disposal "sink"):
 *   relayhost = [127.0.0.1]:SINK   Deliver everything to the local smtp-sink (no DNS: a
 *                                  bracketed IP literal is used as is).
 *   Mode "discard" (intake default):
 *   default_transport = discard    Queued mail is handed to discard(8) instead of being sent
 *                                  out: nothing leaves loopback, no DNS lookups, and the
 *                                  queue stays near-empty as in steady state.
 *
 * master.cf is /usr/share/postfix/master.cf.dist (Debian's copy of the stock master.cf) with:
 *   - the "smtp inet" service renamed to "127.0.0.1:PORT inet" (listen address and port);
 *   - the chroot column set to "n" on every service: Debian ships "y", upstream Postfix ships
 *     "n"; a chroot would need copies of /etc files inside the private queue directory.
 * Nothing else is changed: process limits (default_process_limit 100), smtpd's flow control
 * (in_flow_delay 1s), the smtp client's concurrency (default_destination_concurrency_limit 20,
 * initial_destination_concurrency 5) and connection caching (smtp_connection_cache_on_demand
 * = yes: the smtp client keeps and reuses connections to a destination that has a backlog in
 * the active queue, which the relayhost has under load) are all Postfix defaults.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  getFreePort,
  isListening,
  pidsWithEnv,
  registerExitCleanup,
  runSmtpSource,
  startSmtpSink,
  type SmtpSinkHandle,
  type SmtpSourceResult,
} from '../helpers/postfix-tools';

export const POSTFIX_BIN = '/usr/sbin/postfix';
const POSTALIAS_BIN = '/usr/sbin/postalias';
const MASTER_CF_DIST = '/usr/share/postfix/master.cf.dist';
const HOST = '127.0.0.1';

export interface PostfixInstanceOptions {
  /** smtpd port on 127.0.0.1. Default: a free port (retried if the bind loses a race). */
  port?: number;
  /** Where queued mail goes: 'discard' (discard(8)) or 'relay' to relayhost. Default 'discard'. */
  delivery?: 'discard' | 'relay';
  /** For delivery 'relay': the sink's port on 127.0.0.1 (relayhost = [127.0.0.1]:PORT). */
  relayPort?: number;
  /** Keep the temp directory after stop (for debugging). Default false. */
  keepDir?: boolean;
  /** Timeout for `postfix start`. Default 30 000 ms. */
  startTimeoutMs?: number;
}

export interface PostfixInstance {
  host: string;
  port: number;
  /** Temp root: etc/ (config_directory), spool/ (queue_directory), data/, maillog. */
  dir: string;
  configDir: string;
  queueDir: string;
  logFile: string;
  /** The main.cf parameters that differ from `postconf -d`. */
  mainCf: Record<string, string>;
  /** Messages currently in the queue (maildrop, incoming, active, deferred, hold). */
  queueSize(): number;
  /** The maillog text so far ('' if none yet). */
  readLog(): string;
  /** Stop Postfix, kill leftovers, remove the directory. Idempotent. */
  stop(): Promise<void>;
}

function runCmd(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
  });
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function lookupId(flag: '-u' | '-g', user: string): number {
  const r = spawnSync('id', [flag, user], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`id ${flag} ${user}: ${r.stderr}`);
  return Number(r.stdout.trim());
}

/** master.cf.dist with the smtpd listener on 127.0.0.1:port and chroot off everywhere. */
export function buildMasterCf(dist: string, port: number): string {
  let smtpInet = 0;
  const lines = dist.split('\n').map((line) => {
    if (line === '' || /^[\s#]/.test(line)) return line;
    const f = line.trim().split(/\s+/);
    if (f.length < 8) return line;
    if (f[0] === 'smtp' && f[1] === 'inet') {
      f[0] = `${HOST}:${port}`;
      smtpInet++;
    }
    f[4] = 'n';
    return f.join('  ');
  });
  if (smtpInet !== 1) throw new Error(`expected one "smtp inet" service in ${MASTER_CF_DIST}, found ${smtpInet}`);
  return lines.join('\n');
}

function killInstanceProcesses(configDir: string): number[] {
  const pids = pidsWithEnv('MAIL_CONFIG', configDir).filter((p) => p !== process.pid);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  return pids;
}

/** Start a private Postfix. Always call stop() (exit handlers are a safety net). */
export async function startPostfix(opts: PostfixInstanceOptions = {}): Promise<PostfixInstance> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error('startPostfix needs root: Postfix master(8) must start as root');
  }
  const delivery = opts.delivery ?? 'discard';
  if (delivery === 'relay' && opts.relayPort === undefined) throw new Error('delivery "relay" needs relayPort');
  const auto = opts.port === undefined || opts.port === 0;
  let lastErr: unknown;
  for (let attempt = 0; attempt < (auto ? 5 : 1); attempt++) {
    const port = auto ? await getFreePort(HOST) : opts.port!;
    try {
      return await startPostfixOnce(opts, delivery, port);
    } catch (err) {
      lastErr = err;
      if (!/address already in use|bind/i.test(String(err))) throw err;
    }
  }
  throw lastErr;
}

async function startPostfixOnce(
  opts: PostfixInstanceOptions,
  delivery: 'discard' | 'relay',
  port: number,
): Promise<PostfixInstance> {
  // Under /var so that maillog_file passes the default maillog_file_prefixes (/var, /dev/stdout).
  const dir = mkdtempSync('/var/tmp/volley-postfix-');
  chmodSync(dir, 0o755); // Postfix daemons run as "postfix" and must traverse it.
  const configDir = path.join(dir, 'etc');
  const queueDir = path.join(dir, 'spool');
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'maillog');
  mkdirSync(configDir, { mode: 0o755 });
  mkdirSync(queueDir, { mode: 0o755 }); // root-owned, like /var/spool/postfix
  mkdirSync(dataDir, { mode: 0o700 });
  chownSync(dataDir, lookupId('-u', 'postfix'), lookupId('-g', 'postfix'));

  const aliases = path.join(configDir, 'aliases');
  writeFileSync(aliases, existsSync('/etc/aliases') ? readFileSync('/etc/aliases') : 'postmaster: root\n');
  const mainCf: Record<string, string> = {
    compatibility_level: '3.7',
    queue_directory: queueDir,
    data_directory: dataDir,
    inet_interfaces: HOST,
    inet_protocols: 'ipv4',
    mynetworks: '127.0.0.0/8',
    maillog_file: logFile,
    alias_maps: `hash:${aliases}`,
    alias_database: `hash:${aliases}`,
  };
  if (delivery === 'relay') mainCf.relayhost = `[${HOST}]:${opts.relayPort}`;
  else mainCf.default_transport = 'discard';
  writeFileSync(
    path.join(configDir, 'main.cf'),
    '# Generated by test/bench/postfix.ts: compiled-in defaults except for these (see that file).\n' +
      Object.entries(mainCf)
        .map(([k, v]) => `${k} = ${v}\n`)
        .join(''),
  );
  writeFileSync(path.join(configDir, 'master.cf'), buildMasterCf(readFileSync(MASTER_CF_DIST, 'utf8'), port));
  const pa = spawnSync(POSTALIAS_BIN, ['-c', configDir, `hash:${aliases}`], { encoding: 'utf8', timeout: 10_000 });
  if (pa.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`postalias failed: ${pa.stderr}`);
  }

  let stopped: Promise<void> | null = null;
  const stopSync = (): void => {
    spawnSync(POSTFIX_BIN, ['-c', configDir, 'stop'], { stdio: 'ignore', timeout: 10_000 });
    for (let i = 0; i < 30 && pidsWithEnv('MAIL_CONFIG', configDir).length > 0; i++) sleepSync(100);
    killInstanceProcesses(configDir);
    if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
  };
  const unregister = registerExitCleanup(stopSync);

  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      try {
        await runCmd(POSTFIX_BIN, ['-c', configDir, 'stop'], 10_000);
        const deadline = Date.now() + 3000;
        while (pidsWithEnv('MAIL_CONFIG', configDir).length > 0 && Date.now() < deadline) await sleep(50);
        killInstanceProcesses(configDir);
        if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
      } finally {
        unregister();
      }
    })();
    return stopped;
  };

  const readLog = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');

  const started = await runCmd(POSTFIX_BIN, ['-c', configDir, 'start'], opts.startTimeoutMs ?? 30_000);
  if (started.code !== 0 || !isListening(HOST, port)) {
    const log = readLog();
    await stop();
    throw new Error(`postfix start failed (exit ${started.code}): ${started.out}\n${log.slice(-3000)}`);
  }

  const queueSize = (): number => {
    let n = 0;
    const walk = (d: string): void => {
      let ents: string[];
      try {
        ents = readdirSync(d);
      } catch {
        return;
      }
      for (const e of ents) {
        const p = path.join(d, e);
        try {
          if (statSync(p).isDirectory()) walk(p);
          else n++;
        } catch {
          /* moved between queues while walking */
        }
      }
    };
    for (const q of ['maildrop', 'incoming', 'active', 'deferred', 'hold']) walk(path.join(queueDir, q));
    return n;
  };

  return { host: HOST, port, dir, configDir, queueDir, logFile, mainCf, queueSize, readLog, stop };
}

/* ------------------------------------------------------------------------------------------ */
/* Measurements */

export interface PostfixLoad {
  /** Messages in the timed run. */
  messages: number;
  /** Concurrent smtp-source sessions (a new connection per message). */
  sessions: number;
  /** smtp-source payload bytes per message (-l; smtp-source adds ~150 bytes of headers). */
  sizeBytes: number;
  /** Untimed messages sent first so smtpd/cleanup processes exist. Default sessions * 5. */
  warmupMessages?: number;
  /** Bound for each smtp-source run and for the whole relay wait. Default 120 000 ms. */
  timeoutMs?: number;
}

export interface PostfixMeasurement {
  msgsPerSec: number;
  elapsedMs: number;
  messages: number;
  sessions: number;
  sizeBytes: number;
  warmupMessages: number;
}

export interface PostfixIntakeOptions extends PostfixLoad {
  /**
   * Where accepted mail goes while intake is measured. 'discard' (default): discard(8), the
   * cheapest full path (smtpd -> cleanup writes and fsyncs the queue file -> 250 -> qmgr ->
   * discard -> queue file removed), no network. 'sink': relayed to a fast local smtp-sink.
   */
  disposal?: 'discard' | 'sink';
}

export interface PostfixRelayOptions extends PostfixLoad {
  /** Hold the sink's reply to each end of data this long (see startSmtpSink holdMs). Default 0. */
  sinkDelayMs?: number;
}

export interface PostfixRelayMeasurement extends PostfixMeasurement {
  /** When smtp-source had all messages accepted by Postfix, ms from the start. */
  intakeElapsedMs: number;
  sinkDelayMs: number;
  /** How the sink hold was done ('none' | 'smtp-sink' | 'proxy'). */
  sinkHoldMode: string;
}

/** The benchmark's load: 20 concurrent sessions, new connection per message, 2 KB payload. */
export const DEFAULT_BENCH_LOAD = { messages: 10_000, sessions: 20, sizeBytes: 2048 } as const;

const FROM = 'sender@bench.example';
const TO = 'rcpt@relay.bench.example';

function checkLoad(o: PostfixLoad): Required<PostfixLoad> {
  const r = {
    messages: o.messages,
    sessions: o.sessions,
    sizeBytes: o.sizeBytes,
    warmupMessages: o.warmupMessages ?? o.sessions * 5,
    timeoutMs: o.timeoutMs ?? 120_000,
  };
  for (const [k, v] of Object.entries(r)) {
    if (!Number.isInteger(v) || v < 0 || (k !== 'warmupMessages' && k !== 'sizeBytes' && v === 0)) {
      throw new Error(`bad ${k}: ${v}`);
    }
  }
  return r;
}

function assertSourceOk(what: string, r: SmtpSourceResult): void {
  if (r.exitCode !== 0) {
    throw new Error(
      `${what}: smtp-source ${r.timedOut ? 'timed out' : `exited ${r.exitCode ?? r.signal}`}: ${r.stderr.slice(-2000)}`,
    );
  }
}

/**
 * Rate at which a default Postfix ACCEPTS the load: smtp-source's wall time for `messages`
 * messages, each in its own connection, `sessions` at a time. smtp-source exits 0 only if
 * every message got its 250 (i.e. was durably queued). Deliveries go to discard(8) by default.
 */
export async function measurePostfixIntake(opts: PostfixIntakeOptions): Promise<PostfixMeasurement> {
  const load = checkLoad(opts);
  let sink: SmtpSinkHandle | null = null;
  let pf: PostfixInstance | null = null;
  try {
    if (opts.disposal === 'sink') sink = await startSmtpSink();
    pf = await startPostfix(sink ? { delivery: 'relay', relayPort: sink.port } : { delivery: 'discard' });
    const source = { port: pf.port, sessions: load.sessions, sizeBytes: load.sizeBytes, from: FROM, to: TO, timeoutMs: load.timeoutMs };
    if (load.warmupMessages > 0) {
      assertSourceOk('warm-up', await runSmtpSource({ ...source, messages: load.warmupMessages }));
    }
    const r = await runSmtpSource({ ...source, messages: load.messages });
    assertSourceOk('intake', r);
    return {
      msgsPerSec: load.messages / (r.elapsedMs / 1000),
      elapsedMs: r.elapsedMs,
      messages: load.messages,
      sessions: load.sessions,
      sizeBytes: load.sizeBytes,
      warmupMessages: load.warmupMessages,
    };
  } finally {
    await pf?.stop();
    await sink?.stop();
  }
}

/**
 * End-to-end rate: smtp-source -> default Postfix -> smtp-sink (relayhost), timed from the
 * start of smtp-source until the sink has received every message's final ".".
 */
export async function measurePostfixRelay(opts: PostfixRelayOptions): Promise<PostfixRelayMeasurement> {
  const load = checkLoad(opts);
  const sinkDelayMs = opts.sinkDelayMs ?? 0;
  let sink: SmtpSinkHandle | null = null;
  let pf: PostfixInstance | null = null;
  try {
    sink = await startSmtpSink({ holdMs: sinkDelayMs });
    pf = await startPostfix({ delivery: 'relay', relayPort: sink.port });
    const source = { port: pf.port, sessions: load.sessions, sizeBytes: load.sizeBytes, from: FROM, to: TO, timeoutMs: load.timeoutMs };
    if (load.warmupMessages > 0) {
      assertSourceOk('warm-up', await runSmtpSource({ ...source, messages: load.warmupMessages }));
      await sink.waitForMessages(load.warmupMessages, load.timeoutMs);
    }
    const base = sink.messages();
    const t0 = process.hrtime.bigint();
    let intakeElapsedMs = 0;
    const run = runSmtpSource({ ...source, messages: load.messages }).then((r) => {
      intakeElapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
      return r;
    });
    let sourceFailed: Error | null = null;
    const watchSource = run.then((r) => {
      try {
        assertSourceOk('relay', r);
      } catch (e) {
        sourceFailed = e as Error;
      }
    });
    await Promise.race([
      sink.waitForMessages(base + load.messages, load.timeoutMs),
      // Fail fast if smtp-source fails instead of waiting for the timeout.
      watchSource.then(() => (sourceFailed ? Promise.reject(sourceFailed) : new Promise<never>(() => undefined))),
    ]);
    const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
    await watchSource;
    if (sourceFailed) throw sourceFailed;
    return {
      msgsPerSec: load.messages / (elapsedMs / 1000),
      elapsedMs,
      intakeElapsedMs,
      messages: load.messages,
      sessions: load.sessions,
      sizeBytes: load.sizeBytes,
      warmupMessages: load.warmupMessages,
      sinkDelayMs,
      sinkHoldMode: sink.holdMode,
    };
  } finally {
    await pf?.stop();
    await sink?.stop();
  }
}
