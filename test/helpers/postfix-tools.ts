/**
 * Typed wrappers around Postfix's load tools, for tests and benchmarks:
 *
 *   - runSmtpSource(): /usr/sbin/smtp-source, the parallel SMTP load generator.
 *   - startSmtpSink(): /usr/sbin/smtp-sink, the parallel SMTP test server, with exact counters.
 *
 * Facts these wrappers rely on (Postfix 3.7 smtp-source(1)/smtp-sink(1) and their source):
 *
 *   smtp-source
 *     - One message per connection by default: it connects, HELO, MAIL, RCPT, DATA, QUIT and
 *       disconnects for every message. `-d` ("don't disconnect") keeps the session open for the
 *       next message. (Checked: 20 messages on 5 sessions give 20 sessions at smtp-sink.)
 *     - It speaks HELO (not EHLO) and does not pipeline.
 *     - `-l N` sends N bytes of payload *plus* its own headers (From, To, Date, Message-Id,
 *       ~150 bytes): a 2048-byte payload is a ~2.2 KB message on the wire.
 *     - Without `-A` it aborts (non-zero exit) on the first unexpected reply, so exit code 0
 *       means every transaction was accepted with 2xx.
 *
 *   smtp-sink
 *     - `-c` prints `sess=%d quit=%d mesg=%d\r` on stdout, flushed, whenever a session ends
 *       (`sess`), a QUIT is executed (`quit`) or a message's final "." is received (`mesg`).
 *       `mesg` is counted when the "." arrives (after the dump file, if any, is closed) and
 *       *before* the 250 reply is sent, so with a hold the count leads the reply by the hold.
 *     - It has no accept counter: a session still open is not in `sess`. For an exact count of
 *       accepted connections we parse `-v` (stderr line "smtp-sink: connect (AF_INET a.b.c.d)"),
 *       or count accepts in the hold proxy (below). `-v` logs every command, so it is opt-in.
 *     - Delays are whole seconds only (`atoi`): `-w N` delays the reply to the DATA command,
 *       `-W cmd:N[:odds]` delays the reply to any command, e.g. `-W .:1` holds the reply to
 *       the end of data for 1 s. There is no sub-second flag, so a 300 ms hold is done by a
 *       small loopback proxy in front of smtp-sink that delays the end-of-data reply (see
 *       SmtpSinkOptions.holdMs). The proxy binds its upstream socket to the client's own
 *       loopback address, so X-Client-Addr in dumps is still the real client's address.
 *     - `-d template` writes one file per transaction (headers X-Client-Addr, X-Client-Proto,
 *       X-Helo-Args, X-Mail-Args, X-Rcpt-Args, a 3-line Received:, then the message with
 *       CRLF turned into LF and dot-stuffing removed, then an empty line). `-D` appends all to
 *       one file. `-R` is chroot, not a dump option.
 *     - Run as root it requires `-u user`; we use "nobody" and chown the dump directory.
 *
 * Everything binds to loopback by default. Linux only (readiness is read from /proc/net/tcp
 * so that no probe connection disturbs the counters).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, promises as fsp, readFileSync, readSync, readdirSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { HeldReplies } from './held-replies';

export const SMTP_SOURCE_BIN = '/usr/sbin/smtp-source';
export const SMTP_SINK_BIN = '/usr/sbin/smtp-sink';

/* ------------------------------------------------------------------------------------------ */
/* Cleanup registry: children must not outlive the Node process (smtp-sink never exits alone). */

type SyncCleanup = () => void;
const cleanups = new Set<SyncCleanup>();
let hooksInstalled = false;

function runAllCleanups(): void {
  for (const fn of [...cleanups]) {
    try {
      fn();
    } catch {
      /* best effort on the way out */
    }
  }
  cleanups.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  runAllCleanups();
  process.removeListener(signal, onSignal);
  // Keep the default behaviour (terminate) unless someone else also listens for it.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

/**
 * Register a synchronous cleanup run on process exit and on SIGINT/SIGTERM/SIGHUP.
 * Returns a function that unregisters it (call it once the resource is released normally).
 */
export function registerExitCleanup(fn: SyncCleanup): () => void {
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.on('exit', runAllCleanups);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
  }
  cleanups.add(fn);
  return () => {
    cleanups.delete(fn);
  };
}

function killQuietly(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Ports */

/** A port that was free on `host` a moment ago (bind port 0, read it, close). Racy by nature:
 * callers that spawn a server on it retry with a new port if the bind fails. */
/**
 * A free port below the kernel's ephemeral range (32768+ here). A port the
 * kernel hands out for `listen(0)` can be taken by any outbound connection
 * before the caller binds it; the benches open tens of thousands of those.
 */
export async function getFreePort(host = '127.0.0.1'): Promise<number> {
  let lastErr: unknown;
  for (let i = 0; i < 50; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    try {
      await probeListen(host, port);
      return port;
    } catch (err) {
      lastErr = err;
    }
  }
  throw new Error(`getFreePort: no free port on ${host}: ${String(lastErr)}`);
}

function probeListen(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve()));
  });
}

function ipv4ToProcHex(ip: string): string {
  const parts = ip.split('.').map((p) => Number(p));
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`);
  }
  // /proc/net/tcp prints the address as the host-order (little-endian on x86/arm) u32.
  return parts
    .reverse()
    .map((p) => p.toString(16).padStart(2, '0'))
    .join('')
    .toUpperCase();
}

/** True if a TCP socket is in LISTEN state on ip:port (IPv4 numeric, or 0.0.0.0), per /proc. */
export function isListening(ip: string, port: number): boolean {
  const portHex = port.toString(16).toUpperCase().padStart(4, '0');
  const wanted = new Set([`${ipv4ToProcHex(ip)}:${portHex}`, `00000000:${portHex}`]);
  let text: string;
  try {
    text = readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    throw new Error('isListening needs /proc/net/tcp (Linux)');
  }
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length > 3 && cols[3] === '0A' && wanted.has(cols[1] ?? '')) return true;
  }
  return false;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/* ------------------------------------------------------------------------------------------ */
/* smtp-source */

export interface SmtpSourceOptions {
  /** Server host (numeric). Default 127.0.0.1. */
  host?: string;
  port: number;
  /** -m: messages in total. Default 1. */
  messages?: number;
  /** -s: parallel sessions. Default 1. */
  sessions?: number;
  /** -l: payload bytes per message, not counting smtp-source's ~150 bytes of headers. */
  sizeBytes?: number;
  /** -f: envelope sender. Default sender@bench.example. */
  from?: string;
  /** -t: envelope recipient. Default rcpt@bench.example (not a local domain of any test MTA). */
  to?: string;
  /** -d: keep the connection for the next message. Default false = a new connection per message. */
  reuseConnection?: boolean;
  /** -N: prefix a non-repeating sequence number to each recipient. */
  uniqueRecipients?: boolean;
  /** -r: recipients per transaction. */
  recipientsPerMessage?: number;
  /** -M: HELO name (and default sender/recipient domain). */
  heloName?: string;
  /** -S: Subject header. */
  subject?: string;
  /** -F: send this pre-formatted message file instead of generated content. */
  messageFile?: string;
  /** -A: don't abort on unexpected replies (exit code then no longer proves acceptance). */
  continueOnError?: boolean;
  /** -L: speak LMTP. */
  lmtp?: boolean;
  /** -c: print a running counter on stdout (after each DATA). */
  showCounter?: boolean;
  /** Extra raw arguments, inserted before the target. */
  extraArgs?: string[];
  /** Kill smtp-source (SIGKILL) after this long. Default 120 000 ms. */
  timeoutMs?: number;
}

export interface SmtpSourceResult {
  /** Wall time from spawn to exit, in milliseconds (includes ~1-2 ms process start). */
  elapsedMs: number;
  /** Exit code; null if killed by a signal (e.g. on timeout). 0 = every transaction got 2xx. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  /** The argv used (without the binary), for logs. */
  args: string[];
}

const MAX_CAPTURE = 256 * 1024;

function appendCapped(prev: string, chunk: string): string {
  const next = prev + chunk;
  return next.length > MAX_CAPTURE ? next.slice(next.length - MAX_CAPTURE) : next;
}

export function smtpSourceArgs(opts: SmtpSourceOptions): string[] {
  const args: string[] = [];
  const int = (name: string, v: number | undefined, min: number): number | undefined => {
    if (v === undefined) return undefined;
    if (!Number.isInteger(v) || v < min) throw new Error(`smtp-source ${name} must be an integer >= ${min}: ${v}`);
    return v;
  };
  const messages = int('messages', opts.messages ?? 1, 1)!;
  const sessions = int('sessions', opts.sessions ?? 1, 1)!;
  const size = int('sizeBytes', opts.sizeBytes, 0);
  const rcpts = int('recipientsPerMessage', opts.recipientsPerMessage, 1);
  args.push('-m', String(messages), '-s', String(sessions));
  if (size !== undefined) args.push('-l', String(size));
  args.push('-f', opts.from ?? 'sender@bench.example', '-t', opts.to ?? 'rcpt@bench.example');
  if (opts.reuseConnection) args.push('-d');
  if (opts.uniqueRecipients) args.push('-N');
  if (rcpts !== undefined) args.push('-r', String(rcpts));
  if (opts.heloName !== undefined) args.push('-M', opts.heloName);
  if (opts.subject !== undefined) args.push('-S', opts.subject);
  if (opts.messageFile !== undefined) args.push('-F', opts.messageFile);
  if (opts.continueOnError) args.push('-A');
  if (opts.lmtp) args.push('-L');
  if (opts.showCounter) args.push('-c');
  if (opts.extraArgs) args.push(...opts.extraArgs);
  const host = opts.host ?? '127.0.0.1';
  if (!Number.isInteger(opts.port) || opts.port <= 0 || opts.port > 65535) {
    throw new Error(`smtp-source port out of range: ${opts.port}`);
  }
  args.push(`inet:${host.includes(':') ? `[${host}]` : host}:${opts.port}`);
  return args;
}

/** Run smtp-source to completion. Never rejects for a non-zero exit: check `exitCode`. */
export function runSmtpSource(opts: SmtpSourceOptions): Promise<SmtpSourceResult> {
  const args = smtpSourceArgs(opts);
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(SMTP_SOURCE_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const unregister = registerExitCleanup(() => killQuietly(child));
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout = appendCapped(stdout, c)));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr = appendCapped(stderr, c)));
    const timer = setTimeout(() => {
      timedOut = true;
      killQuietly(child);
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      unregister();
      reject(err);
    });
    child.once('close', (code, signal) => {
      const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
      clearTimeout(timer);
      unregister();
      resolve({ elapsedMs, exitCode: code, signal, timedOut, stdout, stderr, args });
    });
  });
}

/* ------------------------------------------------------------------------------------------ */
/* smtp-sink */

export interface SmtpSinkOptions {
  /** Listen address (numeric IPv4). Default 127.0.0.1. */
  host?: string;
  /** Listen port. Default: a free port (retried if the bind loses a race). */
  port?: number;
  /** listen(2) backlog. Default 256. */
  backlog?: number;
  /**
   * Hold the reply to each message's end of data ("."), emulating a receiver that takes this
   * long per transaction. Whole seconds use smtp-sink's own `-W .:N`; any other value (e.g.
   * 300) puts a loopback proxy in front of smtp-sink that delays that one reply (smtp-sink's
   * delays are whole seconds only). Default 0: no hold.
   */
  holdMs?: number;
  /**
   * 'proxy': use the hold proxy even for whole seconds or 0 ms, so a
   * measurement without the hold runs through the same relay as one with it.
   */
  holdVia?: 'proxy';
  /** Count accepted connections exactly (via `-v`, or the hold proxy's accept count). Default false. */
  countConnections?: boolean;
  /** Dump every transaction to one file in this directory (`-d DIR/msg.`). Created if missing. */
  dumpDir?: string;
  /** -m: max simultaneous connections handled (excess wait in the backlog). Default 256. */
  maxConnections?: number;
  /** -h: hostname in greeting and HELO/EHLO replies. */
  hostname?: string;
  /** -u: user to run as when started as root. Default "nobody". */
  user?: string;
  /** Extra raw arguments, before the address. */
  extraArgs?: string[];
  /** How long to wait for the listener. Default 5 000 ms. */
  readyTimeoutMs?: number;
}

export interface SmtpSinkCounts {
  /** Messages whose final "." was received (exact; from `-c`). */
  messages: number;
  /** Sessions that have ended (closed for any reason; from `-c`). */
  sessionsEnded: number;
  /** QUIT commands executed (from `-c`). */
  quits: number;
  /** Accepted connections, or null when countConnections was not enabled. */
  connections: number | null;
}

export interface DumpedMessage {
  file: string;
  clientAddr: string;
  clientProto: string;
  helo: string | null;
  mailFrom: string;
  rcptTo: string[];
  /** Message as received (header + body), LF line ends, dot-stuffing removed. */
  content: string;
}

export interface SmtpSinkHandle {
  host: string;
  port: number;
  /** smtp-sink's pid. */
  pid: number;
  /** How holdMs is implemented. */
  holdMode: 'none' | 'smtp-sink' | 'proxy';
  /** smtp-sink argv (without the binary). */
  args: string[];
  messages(): number;
  sessionsEnded(): number;
  quits(): number;
  /** Accepted connections; throws if countConnections was not enabled. */
  connections(): number;
  counts(): SmtpSinkCounts;
  /** Resolve once pred(counts) holds; reject on timeout or if the sink dies. */
  waitFor(pred: (c: SmtpSinkCounts) => boolean, timeoutMs: number): Promise<SmtpSinkCounts>;
  /** waitFor(c => c.messages >= n). */
  waitForMessages(n: number, timeoutMs: number): Promise<SmtpSinkCounts>;
  /** Parse all dump files (needs dumpDir). Only complete transactions are in the directory. */
  readDumps(): Promise<DumpedMessage[]>;
  /** Last 256 KB of stderr (warnings such as "lost connection"). */
  stderr(): string;
  /** Stop smtp-sink (and the proxy) and return the final counts. Idempotent. */
  stop(): Promise<SmtpSinkCounts>;
}

const COUNT_RE = /^sess=(\d+) quit=(\d+) mesg=(\d+)$/;
const CONNECT_RE = /^(?:\S*\/)?smtp-sink: connect \(AF_INET6? /;

export async function startSmtpSink(opts: SmtpSinkOptions = {}): Promise<SmtpSinkHandle> {
  const autoPort = opts.port === undefined || opts.port === 0;
  const attempts = autoPort ? 5 : 1;
  let lastErr: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await startSmtpSinkOnce(opts, autoPort ? await getFreePort(opts.host ?? '127.0.0.1') : opts.port!);
    } catch (err) {
      lastErr = err;
      if (!(err instanceof BindError)) throw err;
    }
  }
  throw lastErr;
}

class BindError extends Error {}

async function startSmtpSinkOnce(opts: SmtpSinkOptions, port: number): Promise<SmtpSinkHandle> {
  const host = opts.host ?? '127.0.0.1';
  ipv4ToProcHex(host); // validates: numeric IPv4 only
  const holdMs = opts.holdMs ?? 0;
  if (!Number.isInteger(holdMs) || holdMs < 0) throw new Error(`holdMs must be a non-negative integer: ${holdMs}`);
  const holdMode: SmtpSinkHandle['holdMode'] = opts.holdVia === 'proxy' ? 'proxy' : holdMs === 0 ? 'none' : holdMs % 1000 === 0 ? 'smtp-sink' : 'proxy';

  // With the proxy, smtp-sink listens on an inner port and the proxy on the public one.
  const innerPort = holdMode === 'proxy' ? await getFreePort(host) : port;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const user = opts.user ?? 'nobody';
  const verbose = opts.countConnections === true && holdMode !== 'proxy';

  const args: string[] = ['-c'];
  if (verbose) args.push('-v');
  if (isRoot) args.push('-u', user);
  if (holdMode === 'smtp-sink') args.push('-W', `.:${holdMs / 1000}`);
  if (opts.maxConnections !== undefined) args.push('-m', String(opts.maxConnections));
  if (opts.hostname !== undefined) args.push('-h', opts.hostname);
  if (opts.dumpDir !== undefined) {
    await fsp.mkdir(opts.dumpDir, { recursive: true });
    if (isRoot) {
      const pw = spawnSync('id', ['-u', user], { encoding: 'utf8' });
      const gr = spawnSync('id', ['-g', user], { encoding: 'utf8' });
      if (pw.status !== 0 || gr.status !== 0) throw new Error(`unknown user ${user}`);
      await fsp.chown(opts.dumpDir, Number(pw.stdout.trim()), Number(gr.stdout.trim()));
    }
    args.push('-d', path.join(path.resolve(opts.dumpDir), 'msg.'));
  }
  if (opts.extraArgs) args.push(...opts.extraArgs);
  args.push(`inet:${host}:${innerPort}`, String(opts.backlog ?? 256));

  // The `-c` counter goes to a file that is read every 20 ms (and whenever a
  // count is asked for), not to a pipe: a pipe wakes this process once per
  // message, and in the benchmarks that cost a tenth of a core taken from the
  // system being measured.
  const counterFile = path.join(tmpdir(), `smtp-sink-${process.pid}-${innerPort}-${Date.now()}.count`);
  const counterFd = openSync(counterFile, 'w+');
  const child = spawn(SMTP_SINK_BIN, args, { stdio: ['ignore', counterFd, 'pipe'] });
  const unregister = registerExitCleanup(() => killQuietly(child));

  const counts: SmtpSinkCounts = {
    messages: 0,
    sessionsEnded: 0,
    quits: 0,
    connections: opts.countConnections ? 0 : null,
  };
  let outRest = '';
  let errRest = '';
  let errTail = '';
  let exited = false;
  let exitInfo = '';
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...waiters]) w();
  };

  let counterOffset = 0;
  let counterOpen = true;
  const counterBuf = Buffer.alloc(64 * 1024);
  const readCounter = (): void => {
    if (!counterOpen) return;
    for (;;) {
      const n = readSync(counterFd, counterBuf, 0, counterBuf.length, counterOffset);
      if (n <= 0) return;
      counterOffset += n;
      onCounter(counterBuf.toString('latin1', 0, n));
      if (n < counterBuf.length) return;
    }
  };
  const counterPoll = setInterval(readCounter, 20);
  counterPoll.unref();
  const closeCounter = (): void => {
    if (!counterOpen) return;
    readCounter();
    counterOpen = false;
    clearInterval(counterPoll);
    closeSync(counterFd);
    try {
      unlinkSync(counterFile);
    } catch {
      // already gone
    }
  };
  const onCounter = (chunk: string): void => {
    const parts = (outRest + chunk).split('\r');
    outRest = parts.pop() ?? '';
    let changed = false;
    for (const p of parts) {
      const m = COUNT_RE.exec(p.trim());
      if (!m) continue;
      // Counters only grow; take the max so that a parse oddity can never move them back.
      counts.sessionsEnded = Math.max(counts.sessionsEnded, Number(m[1]));
      counts.quits = Math.max(counts.quits, Number(m[2]));
      counts.messages = Math.max(counts.messages, Number(m[3]));
      changed = true;
    }
    if (changed) notify();
  };
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    if (verbose) {
      const lines = (errRest + chunk).split('\n');
      errRest = lines.pop() ?? '';
      let n = 0;
      for (const l of lines) {
        if (CONNECT_RE.test(l)) n++;
        else errTail = appendCapped(errTail, l + '\n');
      }
      if (n > 0 && counts.connections !== null) {
        counts.connections += n;
        notify();
      }
    } else {
      errTail = appendCapped(errTail, chunk);
    }
  });
  const closed = new Promise<void>((resolve) => {
    child.once('close', (code, signal) => {
      closeCounter();
      exited = true;
      exitInfo = `smtp-sink exited (code ${code}, signal ${signal}): ${errTail.slice(-2000)}`;
      unregister();
      notify();
      resolve();
    });
  });
  child.once('error', (err) => {
    closeCounter();
    exited = true;
    exitInfo = `smtp-sink failed to start: ${err.message}`;
    notify();
  });

  // Wait for the listener without connecting (a probe would count as a session).
  const readyDeadline = Date.now() + (opts.readyTimeoutMs ?? 5000);
  while (!isListening(host, innerPort)) {
    if (exited) {
      if (/bind|address already in use/i.test(exitInfo)) throw new BindError(exitInfo);
      throw new Error(exitInfo);
    }
    if (Date.now() > readyDeadline) {
      killQuietly(child);
      await closed;
      throw new Error(`smtp-sink did not listen on ${host}:${innerPort}: ${errTail.slice(-2000)}`);
    }
    await sleep(10);
  }

  let proxy: HoldProxy | null = null;
  if (holdMode === 'proxy') {
    try {
      proxy = await startHoldProxy({ host, port, upstreamHost: host, upstreamPort: innerPort, holdMs });
    } catch (err) {
      killQuietly(child);
      await closed;
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new BindError(String(err));
      throw err;
    }
    proxy.onAccept = () => {
      if (counts.connections !== null) counts.connections++;
      notify();
    };
  }

  const snapshot = (): SmtpSinkCounts => {
    readCounter();
    return { ...counts };
  };
  let stopping: Promise<SmtpSinkCounts> | null = null;

  const handle: SmtpSinkHandle = {
    host,
    port: holdMode === 'proxy' ? port : innerPort,
    pid: child.pid!,
    holdMode,
    args,
    messages: () => (readCounter(), counts.messages),
    sessionsEnded: () => (readCounter(), counts.sessionsEnded),
    quits: () => (readCounter(), counts.quits),
    connections: () => {
      if (counts.connections === null) throw new Error('startSmtpSink: countConnections was not enabled');
      return counts.connections;
    },
    counts: snapshot,
    waitFor(pred, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (pred(counts)) {
            done();
            resolve(snapshot());
          } else if (exited) {
            done();
            reject(new Error(`${exitInfo} (counts ${JSON.stringify(counts)})`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`smtp-sink: condition not met within ${timeoutMs} ms (counts ${JSON.stringify(counts)})`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    waitForMessages(n, timeoutMs) {
      return handle.waitFor((c) => c.messages >= n, timeoutMs);
    },
    async readDumps() {
      if (opts.dumpDir === undefined) throw new Error('startSmtpSink: no dumpDir');
      const names = (await fsp.readdir(opts.dumpDir)).filter((n) => n.startsWith('msg.')).sort();
      const out: DumpedMessage[] = [];
      for (const name of names) {
        const file = path.join(opts.dumpDir, name);
        out.push(parseSinkDump(file, await fsp.readFile(file, 'utf8')));
      }
      return out;
    },
    stderr: () => errTail,
    stop() {
      stopping ??= (async () => {
        if (proxy) await proxy.close();
        if (!exited) {
          killQuietly(child, 'SIGTERM');
          const t = setTimeout(() => killQuietly(child), 2000);
          await closed;
          clearTimeout(t);
        }
        return snapshot();
      })();
      return stopping;
    },
  };
  return handle;
}

/** Parse one smtp-sink `-d` dump file (format in smtp-sink(1), "DUMP FILE FORMAT"). */
export function parseSinkDump(file: string, text: string): DumpedMessage {
  const lines = text.split('\n');
  let clientAddr = '';
  let clientProto = '';
  let helo: string | null = null;
  let mailFrom = '';
  const rcptTo: string[] = [];
  let i = 0;
  for (; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.startsWith('Received: ')) break;
    const colon = l.indexOf(': ');
    if (colon < 0) continue;
    const key = l.slice(0, colon);
    const val = l.slice(colon + 2);
    if (key === 'X-Client-Addr') clientAddr = val;
    else if (key === 'X-Client-Proto') clientProto = val;
    else if (key === 'X-Helo-Args') helo = val;
    else if (key === 'X-Mail-Args') mailFrom = val;
    else if (key === 'X-Rcpt-Args') rcptTo.push(val);
  }
  if (i >= lines.length) throw new Error(`${file}: not an smtp-sink dump (no Received: line)`);
  // The Received: header is 3 lines: "Received: from ...", "\tby ...", "\t<date>".
  i += 1;
  while (i < lines.length && lines[i]!.startsWith('\t')) i++;
  let content = lines.slice(i).join('\n');
  // smtp-sink appends an empty line after the message.
  if (content.endsWith('\n\n')) content = content.slice(0, -1);
  return { file, clientAddr, clientProto, helo, mailFrom, rcptTo, content };
}

/* ------------------------------------------------------------------------------------------ */
/* Hold proxy: delays the server's reply to each end of data by holdMs. */

interface HoldProxy {
  onAccept: () => void;
  close(): Promise<void>;
}

async function startHoldProxy(o: {
  host: string;
  port: number;
  upstreamHost: string;
  upstreamPort: number;
  holdMs: number;
}): Promise<HoldProxy> {
  const sockets = new Set<net.Socket>();
  const proxy: HoldProxy = {
    onAccept: () => undefined,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = net.createServer({ noDelay: true }, (client) => {
    proxy.onAccept();
    sockets.add(client);
    // Keep the client's loopback address as the source, so the sink sees the real client IP.
    let localAddress: string | undefined = client.remoteAddress?.replace(/^::ffff:/, '');
    if (localAddress === undefined || !/^127\.\d+\.\d+\.\d+$/.test(localAddress)) localAddress = undefined;
    const upstream = net.connect({ host: o.upstreamHost, port: o.upstreamPort, localAddress, noDelay: true });
    sockets.add(upstream);

    // Server -> client: split into reply lines; after a final 354 reply, the next final reply
    // is the end-of-data reply: it and everything after it waits holdMs.
    let pending = '';
    let afterData = false;
    let holdUntil = 0;
    const replies = new HeldReplies(client);
    upstream.on('data', (buf: Buffer) => {
      pending += buf.toString('latin1');
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl + 1);
        pending = pending.slice(nl + 1);
        const isFinal = /^\d{3}(?: |\r?\n)/.test(line);
        if (isFinal && afterData) {
          afterData = false;
          holdUntil = Date.now() + o.holdMs;
        } else if (isFinal && line.startsWith('354')) {
          afterData = true;
        }
        replies.push(holdUntil, line);
      }
      replies.release();
    });
    upstream.on('end', () => {
      replies.push(holdUntil, pending, { end: true });
      pending = '';
      replies.release();
    });
    client.on('data', (buf: Buffer) => upstream.write(buf));
    client.on('end', () => upstream.end());
    const teardown = (): void => {
      replies.cancel();
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', teardown);
    upstream.on('error', teardown);
    client.on('close', () => {
      if (!upstream.destroyed) upstream.end();
      sockets.delete(client);
    });
    upstream.on('close', () => sockets.delete(upstream));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: o.host, port: o.port, backlog: 511, exclusive: true }, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  return proxy;
}

/* ------------------------------------------------------------------------------------------ */
/* Misc */

/** Processes (pids) whose environment contains exactly `NAME=value` (Linux /proc scan). */
export function pidsWithEnv(name: string, value: string): number[] {
  const needle = `${name}=${value}`;
  const out: number[] = [];
  for (const ent of readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    try {
      const env = readFileSync(`/proc/${ent}/environ`, 'latin1').split('\0');
      if (env.includes(needle)) out.push(Number(ent));
    } catch {
      /* gone, or a zombie */
    }
  }
  return out;
}
