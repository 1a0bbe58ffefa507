import { connect as netConnect, type Socket } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, type DetailedPeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { ConnectError, type ConnectFailure, type OutboundSession, type RecipientResult, type SendOptions, type SessionInfo, type SessionTls, type Source, type Target, type TlsaRecord, type TlsOutcome, type TlsRequirement, type TransactionResult } from './connector';
import { daneVerify, usableTlsa } from './dane';
import { endSocket } from '../end-socket';
import { VolleyError } from '../errors';
import { outcomeOf, parseReply, type SmtpReply } from './reply';
import { hasEightBit, toSevenBit } from './seven-bit';

export interface ClientTimeouts {
  connectMs: number;
  /** RFC 5321 4.5.3.2: initial 220, MAIL, RCPT 5 min; DATA 2 min; data block 3 min; final dot 10 min. */
  greetingMs: number;
  commandMs: number;
  dataInitMs: number;
  dataBlockMs: number;
  finalDotMs: number;
  /**
   * The TLS handshake after a 220 to STARTTLS. 30 s: a handshake is two round
   * trips and a few kilobytes, done in well under a second on any working
   * path; Postfix's smtp_starttls_timeout (300 s) is a per-read bound that a
   * trickling peer can stretch, and a stuck handshake holds a connection slot
   * and a throttle permit all that time.
   */
  tlsMs: number;
}

/**
 * The most a server's reply may take, its lines together (RFC 5321
 * 4.5.3.1.5 allows 512 octets a line; EHLO answers and long 5xx texts run to
 * a few KB). A peer past it, one line that never ends or continuation lines
 * without end, is not an SMTP server: the session fails at once, saying so,
 * instead of buffering until the reply's timeout (minutes, gigabytes).
 */
export const MAX_REPLY_BYTES = 64 * 1024;

export const RFC5321_CLIENT_TIMEOUTS: ClientTimeouts = {
  connectMs: 30_000,
  greetingMs: 300_000,
  commandMs: 300_000,
  dataInitMs: 120_000,
  dataBlockMs: 180_000,
  finalDotMs: 600_000,
  tlsMs: 30_000,
};

/** For sessions whose TCP connection was made by someone else (HAProxy mode). */
export interface OpenOptions {
  /** An already-connected socket: open() skips its own connect and starts by reading the greeting. */
  socket?: Socket;
  /** SessionInfo.via (default 'direct'). */
  via?: string;
  /** SessionInfo.localIp (default the socket's local address). */
  localIp?: string;
  /** When the connect began, for SessionInfo.connectMs (default: now). */
  startedAt?: number;
  /** A new connection like `socket`, for the clear-text retry after a failed opportunistic handshake. */
  reconnect?: () => Promise<Socket>;
  /** The CAs a `verify` session trusts instead of node's store (tests, private PKI). */
  ca?: string | Buffer | (string | Buffer)[];
  /** The trust store a `verify` session checks against, built once (mx-trust.ts); wins over `ca`. */
  secureContext?: SecureContext;
}

/** A lenient requirement's handshake failed: open() catches it and retries the MX in clear. */
class HandshakeFailed extends VolleyError {
  constructor(
    message: string,
    readonly tls: TlsOutcome,
  ) {
    super('ETLSHANDSHAKE', message);
  }
}

interface Waiter {
  resolve: (r: SmtpReply) => void;
  reject: (e: Error) => void;
  /** This wait's phase timeout, counted from when it becomes the oldest one. */
  timeoutMs: number;
}

/**
 * A lean outbound SMTP client. Written for the delivery hot path instead of
 * nodemailer's SMTPConnection: measured end to end on the 2-core bench, the
 * stream pipeline nodemailer builds per message (a transform for dot-stuffing,
 * per-command callbacks) cost about as much CPU as the whole intake side. This
 * one pipelines MAIL/RCPT/DATA when the server offers PIPELINING, dot-stuffs
 * with one buffer scan, and keeps TLS and reply parsing per session.
 */
export class SmtpClientSession implements OutboundSession {
  usable = true;
  info!: SessionInfo;
  private socket!: Socket | TLSSocket;
  private buffer = '';
  private lines: string[] = [];
  /** The bytes of `lines` (a multi-line reply so far). */
  private linesBytes = 0;
  private waiters: Waiter[] = [];
  private replies: SmtpReply[] = [];
  private ext = new Set<string>();
  private closed = false;
  private timer?: NodeJS.Timeout;
  private timerMs = 0;
  private corked = false;

  private constructor(private readonly timeouts: ClientTimeouts) {}

  get pipelined(): boolean {
    return this.ext.has('PIPELINING');
  }

  /** The EHLO keywords the server offered (after STARTTLS, the second EHLO's). */
  get capabilities(): string[] {
    return [...this.ext];
  }

  /**
   * Opens a session that meets `tls` (see TlsMode in connector.ts). Under
   * `may`, and under MTA-STS `testing`, a TLS handshake that fails is not the
   * end: the MX is tried again in clear on a new connection (RFC 7435), here
   * rather than in the engine so that every path (direct, HAProxy, the proxy
   * daemon) falls back the same way.
   */
  static async open(target: Target, source: Source, tls: TlsRequirement, timeouts: ClientTimeouts = RFC5321_CLIENT_TIMEOUTS, options: OpenOptions = {}): Promise<SmtpClientSession> {
    const started = options.startedAt ?? Date.now();
    try {
      return await SmtpClientSession.attempt(target, source, tls, timeouts, options, started);
    } catch (err) {
      if (!(err instanceof HandshakeFailed)) throw err;
      let socket: Socket | undefined;
      if (options.socket) {
        if (!options.reconnect) throw new ConnectError('tls-required', `${err.message}; no new connection can be made to retry in clear`, undefined, err.tls);
        socket = await options.reconnect();
      }
      return SmtpClientSession.attempt(target, source, tls, timeouts, { ...options, socket }, started, err.tls);
    }
  }

  /**
   * Runs the session over a socket that is already connected (and, for the
   * HAProxy path, has already carried the PROXY header): greeting, EHLO,
   * STARTTLS and the rest as in open(). `options.reconnect` gives it a new
   * one for the clear-text retry of `may`.
   */
  static openOn(socket: Socket, target: Target, source: Source, tls: TlsRequirement, timeouts: ClientTimeouts = RFC5321_CLIENT_TIMEOUTS, options: Omit<OpenOptions, 'socket'> = {}): Promise<SmtpClientSession> {
    return SmtpClientSession.open(target, source, tls, timeouts, { ...options, socket });
  }

  /** One connection: `inClear` is set for the retry after a failed handshake, with what the failure was. */
  private static async attempt(target: Target, source: Source, tls: TlsRequirement, timeouts: ClientTimeouts, options: OpenOptions, started: number, inClear?: TlsOutcome): Promise<SmtpClientSession> {
    const c = new SmtpClientSession(timeouts);
    if (options.socket) {
      options.socket.setNoDelay(true);
      c.attach(options.socket);
      if (options.socket.destroyed) c.fail(new Error('connection closed by the server'));
    } else await c.connect(target, source);
    return c.establish(target, source, tls, started, options, inClear);
  }

  private async establish(target: Target, source: Source, tls: TlsRequirement, started: number, options: OpenOptions, inClear?: TlsOutcome): Promise<SmtpClientSession> {
    let greeting: SmtpReply;
    try {
      greeting = await this.reply(this.timeouts.greetingMs);
    } catch (err) {
      this.destroy();
      if (err instanceof ConnectError) throw err;
      const code = (err as { code?: string }).code;
      const timedOut = code === 'ETIMEDOUT';
      throw new ConnectError(timedOut ? 'timeout' : code === 'EREPLYTOOLONG' ? 'error' : 'closed-before-greeting', timedOut ? `no greeting: ${(err as Error).message}` : (err as Error).message);
    }
    if (greeting.code !== 220) {
      this.destroy();
      throw new ConnectError('greeting-rejected', `greeting ${greeting.code} ${greeting.text}`, greeting);
    }
    try {
      await this.hello(source.helo);
    } catch (err) {
      // EHLO and HELO refused: QUIT rather than leave the connection open (the engine moves on to the next MX).
      this.close();
      if (err instanceof ConnectError) throw err;
      // No answer to EHLO within its timeout (or the server gone): a connect failure of its own kind, as a silent greeting is.
      const timedOut = (err as { code?: string }).code === 'ETIMEDOUT';
      throw new ConnectError(timedOut ? 'timeout' : 'closed-before-greeting', `EHLO: ${(err as Error).message}`);
    }
    const tlsInfo = inClear ?? (await this.secure(target, source, tls, options));
    this.info = {
      mxHost: target.host,
      mxIp: target.ip,
      port: target.port,
      localIp: options.localIp ?? this.socket.localAddress ?? source.ip,
      helo: source.helo,
      greeting: greeting.text,
      tls: tlsInfo,
      via: options.via ?? 'direct',
      connectMs: Date.now() - started,
    };
    return this;
  }

  /**
   * STARTTLS as the requirement says, and the EHLO after it. Returns what the
   * session reached; throws a ConnectError (kind tls-required, or timeout for
   * a handshake that never ends) carrying the outcome when a requirement that
   * must be met is not, and HandshakeFailed when a lenient one (may, testing)
   * needs the clear-text retry.
   */
  private async secure(target: Target, source: Source, tls: TlsRequirement, options: OpenOptions): Promise<SessionTls> {
    const outcome = (failure?: string): SessionTls => (failure ? { policy: tls.policy, verified: false, failure } : { policy: tls.policy, verified: false });
    if (tls.mode === 'none') return outcome();
    // RFC 7672 2.2: TLSA records that are all unusable leave mandatory but unauthenticated TLS.
    const tlsa = tls.mode === 'dane' ? usableTlsa(tls.tlsa ?? []) : [];
    const mode = tls.mode === 'dane' && tlsa.length === 0 ? 'encrypt' : tls.mode;
    const noted = tls.mode === 'dane' && tlsa.length === 0 ? 'tlsa-invalid' : undefined;
    // A failure here is recorded and the session goes on in clear: opportunistic TLS, or MTA-STS testing.
    const lenient = mode === 'may' || tls.testing === true;
    // No reply on the error: a 5xx to STARTTLS says nothing about the message, which is deferred, not failed.
    const refuse = (failure: string, message: string): never => {
      this.close();
      throw new ConnectError('tls-required', message, undefined, outcome(failure));
    };
    if (!this.ext.has('STARTTLS')) {
      if (lenient) return outcome(mode === 'may' ? undefined : 'starttls-not-supported');
      return refuse('starttls-not-supported', `${target.host} does not offer STARTTLS and TLS is required (${tls.policy})`);
    }
    this.write('STARTTLS\r\n');
    const r = await this.reply(this.timeouts.commandMs);
    if (r.code !== 220) {
      // The session is still in clear and in the state the EHLO left (RFC 3207 4.1).
      if (lenient) return outcome('starttls-not-supported');
      return refuse('starttls-not-supported', `${target.host} answered STARTTLS with ${r.code} ${r.text} and TLS is required (${tls.policy})`);
    }
    const secure = await this.handshake(target, tls, options, lenient, outcome);
    const check = mode === 'verify' ? verifyCheck(secure, tls.names ?? []) : mode === 'dane' ? daneCheck(secure, tlsa, tls.names ?? [target.host]) : undefined;
    if (check?.failure && !tls.testing) refuse(check.failure, `${target.host}: ${check.detail} (TLS policy ${tls.policy})`);
    await this.hello(source.helo);
    const reached = check ? (check.failure ? outcome(check.failure) : { policy: tls.policy, verified: true }) : outcome(noted);
    return { ...reached, version: secure.getProtocol() ?? 'unknown', cipher: secure.getCipher().name };
  }

  /** The TLS handshake over the plain socket, bounded by tlsMs: a peer that says 220 and then nothing must not hold the slot. */
  private async handshake(target: Target, tls: TlsRequirement, options: OpenOptions, lenient: boolean, outcome: (failure?: string) => SessionTls): Promise<TLSSocket> {
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    const servername = isIpLiteral(target.host) ? undefined : target.host;
    try {
      const secure = await new Promise<TLSSocket>((resolve, reject) => {
        // Never rejected by node itself: whether the chain must verify is the
        // requirement's call (may and encrypt do not verify, RFC 7435), checked
        // after the handshake, before a single command is sent inside it.
        const s = tlsConnect({ socket: plain, servername, rejectUnauthorized: false, ...(options.secureContext ? { secureContext: options.secureContext } : options.ca ? { ca: options.ca } : {}) }, () => {
          clearTimeout(timer);
          resolve(s);
        });
        const timer = setTimeout(() => {
          s.destroy();
          reject(Object.assign(new Error(`no TLS handshake in ${this.timeouts.tlsMs} ms`), { code: 'ETIMEDOUT' }));
        }, this.timeouts.tlsMs);
        s.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
      });
      this.attach(secure);
      return secure;
    } catch (err) {
      this.usable = false;
      this.closed = true;
      plain.destroy();
      const timedOut = (err as { code?: string }).code === 'ETIMEDOUT';
      const message = timedOut ? `${target.host}: ${(err as Error).message}` : `${target.host}: TLS handshake failed: ${(err as Error).message}`;
      const failed = outcome('validation-failure');
      if (lenient) throw new HandshakeFailed(message, failed);
      throw new ConnectError(timedOut ? 'timeout' : 'tls-required', `${message} (TLS policy ${tls.policy})`, undefined, failed);
    }
  }

  private connect(target: Target, source: Source): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host: target.ip, port: target.port, localAddress: source.ip });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ConnectError('timeout', `connect to ${target.ip}:${target.port} timed out`));
      }, this.timeouts.connectMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        this.attach(socket);
        resolve();
      });
      socket.once('error', (err: Error & { code?: string }) => {
        clearTimeout(timer);
        reject(new ConnectError(connectFailure(err.code), `${err.code ?? 'error'} connecting to ${target.ip}:${target.port}`));
      });
    });
  }

  private attach(socket: Socket | TLSSocket): void {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('error', () => this.fail(new Error('connection error')));
    socket.on('close', () => this.fail(new Error('connection closed by the server')));
  }

  private onData(d: string): void {
    const buf = this.buffer.length === 0 ? d : this.buffer + d;
    let start = 0;
    for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n', start)) {
      const line = buf.slice(start, nl > start && buf.charCodeAt(nl - 1) === 13 ? nl - 1 : nl);
      start = nl + 1;
      // "250-..." continues a multi-line reply; "250 ..." (or a bare "250") ends it.
      if (line.charCodeAt(3) === 45) {
        this.lines.push(line);
        this.linesBytes += line.length;
        if (this.linesBytes > MAX_REPLY_BYTES) return this.replyTooLong();
      } else this.settle(this.toReply(line));
    }
    this.buffer = start === buf.length ? '' : buf.slice(start);
    if (this.buffer.length > MAX_REPLY_BYTES) this.replyTooLong();
  }

  /** The server's reply passed MAX_REPLY_BYTES: the session fails now, with the reason, and the connection goes. */
  private replyTooLong(): void {
    this.buffer = '';
    this.lines = [];
    this.linesBytes = 0;
    this.fail(Object.assign(new Error(`the server sent a reply over ${MAX_REPLY_BYTES} bytes: not an SMTP server`), { code: 'EREPLYTOOLONG' }));
    this.socket.destroy();
  }

  private toReply(last: string): SmtpReply {
    const code = Number(last.slice(0, 3));
    // parseReply returns a fresh object: the lines are set on it, not spread into another copy.
    if (this.lines.length === 0) return Object.assign(parseReply(last, code), { lines: [last.slice(4)] });
    this.lines.push(last);
    const lines = this.lines.map((l) => l.slice(4));
    this.lines = [];
    this.linesBytes = 0;
    return Object.assign(parseReply(`${last.slice(0, 3)} ${lines.join(' ')}`, code), { lines });
  }

  private settle(r: SmtpReply): void {
    // 421: the server is closing the channel (RFC 5321 3.8); nothing more goes on this session.
    if (r.code === 421) this.usable = false;
    const w = this.waiters.shift();
    if (!w) {
      this.replies.push(r);
      return;
    }
    if (this.waiters.length > 0) this.arm(this.waiters[0].timeoutMs);
    w.resolve(r);
  }

  private fail(err: Error): void {
    this.usable = false;
    this.closed = true;
    clearTimeout(this.timer);
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private reply(timeoutMs: number): Promise<SmtpReply> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    if (this.closed) return Promise.reject(new Error('connection closed by the server'));
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject, timeoutMs });
      if (this.waiters.length === 1) this.arm(timeoutMs);
    });
  }

  /**
   * One timer per session, restarted for each wait: a Timeout object per
   * reply showed in the delivery profile. It runs for the oldest wait only,
   * since replies come in order: with a transaction pipelined behind a body,
   * the body's final-reply wait keeps its own (longer) timeout, and the next
   * envelope's starts when that reply is in. Firing with nothing awaited is
   * ignored.
   */
  private arm(timeoutMs: number): void {
    if (this.timer && this.timerMs === timeoutMs) {
      this.timer.refresh();
      return;
    }
    clearTimeout(this.timer);
    this.timerMs = timeoutMs;
    this.timer = setTimeout(() => {
      if (this.waiters.length === 0) return;
      this.usable = false;
      const err = Object.assign(new Error(`no reply in ${timeoutMs} ms`), { code: 'ETIMEDOUT' });
      for (const w of this.waiters.splice(0)) w.reject(err);
      this.destroy();
    }, timeoutMs);
    // The socket keeps the process alive while a reply is awaited; an idle
    // session's leftover timer must not.
    this.timer.unref();
  }

  /**
   * Writes of one turn of the event loop leave in one segment: with
   * pipelining across transactions, a body and the next envelope are written
   * back to back, and one send (one syscall, one read at the server) costs
   * less than two.
   */
  private write(data: string | Buffer): void {
    if (!this.corked) {
      const socket = this.socket;
      this.corked = true;
      socket.cork();
      process.nextTick(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    this.socket.write(data);
  }

  private async hello(helo: string): Promise<void> {
    this.write(`EHLO ${helo}\r\n`);
    let r = await this.reply(this.timeouts.commandMs);
    if (r.code >= 500) {
      this.write(`HELO ${helo}\r\n`);
      r = await this.reply(this.timeouts.commandMs);
      this.ext = new Set();
    } else {
      // Each line after the first names an extension (RFC 5321 4.1.1.1).
      this.ext = new Set((r.lines ?? []).slice(1).map((l) => l.split(' ')[0].toUpperCase()));
    }
    if (r.code !== 250) throw new ConnectError('greeting-rejected', `EHLO/HELO refused: ${r.code} ${r.text}`, r);
  }

  /**
   * One transaction. With PIPELINING the envelope and DATA go in one write,
   * and the caller may start the next transaction once `onBodySent` fires:
   * replies come back in order, and each send awaits its own, so the next
   * envelope's replies simply queue behind this body's final reply.
   */
  async send(from: string, to: string[], message: Buffer, options: SendOptions = {}): Promise<TransactionResult> {
    const t0 = Date.now();
    // A reply already waiting, before any command of this transaction is
    // written, answers nothing (an MX that answered twice, a reply during an
    // idle spell): every reply after it would be read one command late.
    const unasked = this.replies[0];
    if (unasked) return this.outOfStep(to, `a reply nobody asked for (${unasked.code} ${unasked.text})`, 0);
    let eightBit = hasEightBit(message);
    const utf8 = [from, ...to].some((a) => /[^\x00-\x7f]/.test(a));
    // Nothing goes on the wire for mail this server cannot take: the session stays usable for the next.
    if (utf8 && !this.ext.has('SMTPUTF8')) return refused(to, { code: 550, enhanced: '5.6.7', text: `SMTPUTF8 is required (non-ASCII address), but was not offered by ${this.info.mxHost}` });
    if (eightBit && !this.ext.has('8BITMIME')) {
      // RFC 6152: converted to 7 bit (the engine does it before DKIM signing; this covers every other caller).
      try {
        message = toSevenBit(message);
        eightBit = false;
      } catch (err) {
        return refused(to, { code: 554, enhanced: '5.6.3', text: `8-bit mail that cannot be converted to 7 bit (${(err as Error).message}), and ${this.info.mxHost} does not offer 8BITMIME` });
      }
    }
    let params = '';
    if (this.ext.has('SIZE')) params += ` SIZE=${message.length}`;
    if (eightBit && this.ext.has('8BITMIME')) params += ' BODY=8BITMIME';
    if (utf8 && this.ext.has('SMTPUTF8')) params += ' SMTPUTF8';
    const commands = [`MAIL FROM:<${from}>${params}\r\n`, ...to.map((r) => `RCPT TO:<${r}>\r\n`)];
    const pipelining = this.ext.has('PIPELINING');
    const replies: SmtpReply[] = [];
    if (pipelining) {
      this.write(commands.join('') + 'DATA\r\n');
      for (let i = 0; i < commands.length; i++) replies.push(await this.reply(this.timeouts.commandMs));
    } else {
      for (const c of commands) {
        this.write(c);
        const r = await this.reply(this.timeouts.commandMs);
        replies.push(r);
        if (replies.length === 1 && !positive(r.code)) break;
      }
    }
    const mail = replies[0];
    const rcptReplies = replies.slice(1);
    const envelopeMs = Date.now() - t0;
    // MAIL and RCPT are taken on any 2xx, as Postfix's client takes them (a
    // 251, or the 252 some catch-all MXs give to RCPT, accepts the recipient).
    // A reply that can answer neither (a 354 or other 3xx, a 1xx, a line that
    // is no reply at all: NaN) means the MX is out of step with the commands,
    // or lying, and a later 2xx may be an earlier command's answer: nothing it
    // said is taken for acceptance. The shifted case where every reply is a
    // 2xx is caught at DATA, which only a 354 answers.
    if (!(mail.code >= 400) && !positive(mail.code)) return this.outOfStep(to, `MAIL answered ${mail.code} ${mail.text}`, envelopeMs);
    const strayRcpt = rcptReplies.find((r) => !(r.code >= 400) && !positive(r.code));
    if (strayRcpt) return this.outOfStep(to, `RCPT answered ${strayRcpt.code} ${strayRcpt.text}`, envelopeMs);
    const accepted = to.filter((_, i) => positive(rcptReplies[i]?.code));
    const resultFor = (rcpt: string, i: number, final?: SmtpReply): RecipientResult => {
      const r = !positive(mail.code) ? mail : (rcptReplies[i]?.code ?? 0) >= 300 ? rcptReplies[i] : final!;
      return { rcpt, reply: r, outcome: outcomeOf(r.code) };
    };
    if (!positive(mail.code) || accepted.length === 0) {
      // The answer to the pipelined DATA (503/554) — or nothing, when the
      // server hung up after a 421: the replies already read still stand.
      const closed = pipelining ? await this.reply(this.timeouts.dataInitMs).then(() => false, () => true) : false;
      if (closed) this.usable = false;
      else await this.reset();
      return { recipients: to.map((r, i) => resultFor(r, i)), envelopeMs, dataMs: 0 };
    }
    if (!pipelining) this.write('DATA\r\n');
    const dataReply = await this.reply(this.timeouts.dataInitMs);
    // Only a 354 lets the body go: a 2xx here is no acceptance of a body never sent.
    if (dataReply.code !== 354 && !(dataReply.code >= 400)) return this.outOfStep(to, `DATA answered ${dataReply.code} ${dataReply.text}`, envelopeMs);
    if (dataReply.code !== 354) {
      await this.reset();
      return { recipients: to.map((r, i) => resultFor(r, i, dataReply)), envelopeMs, dataMs: 0 };
    }
    const t1 = Date.now();
    this.write(dotStuff(message));
    // Awaited before onBodySent runs: a caller may start the next send() inside
    // it (the proxy's transaction pipe does), whose replies must queue behind this one.
    const finalReply = this.reply(this.timeouts.finalDotMs);
    options.onBodySent?.();
    // No RSET after a refused body: the final reply ends the transaction
    // either way (RFC 5321 4.1.1.4), and a pipelined next envelope may
    // already be on the wire behind it.
    const final = await finalReply;
    return { recipients: to.map((r, i) => resultFor(r, i, final)), envelopeMs, dataMs: Date.now() - t1 };
  }

  /**
   * The MX gave a reply that cannot answer what was sent (`what`): every
   * recipient is deferred (never delivered on a reply out of place) and the
   * connection is cut without QUIT, so an MX already in its DATA phase drops
   * the transaction rather than take whatever came next as the message.
   */
  private outOfStep(to: string[], what: string, envelopeMs: number): TransactionResult {
    this.destroy();
    const reply: SmtpReply = { code: 451, enhanced: '4.5.0', text: `${what.slice(0, 200)}: the MX is out of step with the commands; not sent` };
    return { recipients: to.map((rcpt) => ({ rcpt, reply, outcome: 'deferred' })), envelopeMs, dataMs: 0 };
  }

  private async reset(): Promise<void> {
    if (!this.usable) return;
    this.write('RSET\r\n');
    const r = await this.reply(this.timeouts.commandMs).catch(() => undefined);
    if (!r || r.code !== 250) this.usable = false;
  }

  /** Resolves once the connection is gone on both sides (after close(), or the server's close). */
  whenClosed(): Promise<void> {
    const socket = this.socket;
    if (!socket || socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => socket.once('close', () => resolve()));
  }

  close(): void {
    if (this.closed) return;
    this.usable = false;
    try {
      this.write('QUIT\r\n');
    } catch {
      // already gone
    }
    endSocket(this.socket, 5000);
  }

  private destroy(): void {
    this.usable = false;
    clearTimeout(this.timer);
    this.socket?.destroy();
  }
}

/** What a socket error code says about a failed connect, in the attempt log's words. */
export function connectFailure(code: string | undefined): ConnectFailure {
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'ETIMEDOUT') return 'timeout';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') return 'unreachable';
  if (code === 'ECONNRESET') return 'closed-before-greeting';
  return 'error';
}

interface Check {
  failure?: string;
  detail: string;
}

/** verify: the chain is valid (node's store or options.ca) and the leaf is issued for one of the names. */
function verifyCheck(secure: TLSSocket, names: string[]): Check {
  if (!secure.authorized) {
    const reason = String(secure.authorizationError ?? 'unverified');
    return { failure: authorizationFailure(reason), detail: `certificate not verified: ${reason}` };
  }
  const cert = secure.getPeerCertificate();
  if (!names.some((n) => checkServerIdentity(n, cert) === undefined)) return { failure: 'certificate-host-mismatch', detail: `certificate not issued for ${names.join(' or ') || '(no name)'}` };
  return { detail: 'verified' };
}

/** dane: the presented chain against the usable TLSA records (dane.ts). */
function daneCheck(secure: TLSSocket, tlsa: TlsaRecord[], names: string[]): Check {
  const result = daneVerify(peerChain(secure), tlsa, names);
  return { failure: result.failure, detail: result.detail };
}

/** The chain as presented, leaf first, in DER. */
function peerChain(secure: TLSSocket): Buffer[] {
  const chain: Buffer[] = [];
  let cert: DetailedPeerCertificate | undefined = secure.getPeerCertificate(true);
  const seen = new Set<DetailedPeerCertificate>();
  while (cert && cert.raw && !seen.has(cert)) {
    seen.add(cert);
    chain.push(cert.raw);
    // A self-signed root is its own issuer.
    cert = cert.issuerCertificate && cert.issuerCertificate !== cert ? cert.issuerCertificate : undefined;
  }
  return chain;
}

/** OpenSSL's verify error, in RFC 8460's result types. */
export function authorizationFailure(code: string): string {
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return 'certificate-expired';
  if (/SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY_LEAF|CERT_UNTRUSTED|CERT_REJECTED|INVALID_CA/.test(code)) return 'certificate-not-trusted';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH') return 'certificate-host-mismatch';
  return 'validation-failure';
}

function isIpLiteral(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

/** Every recipient failed with `reply`, nothing sent. */
function refused(to: string[], reply: SmtpReply): TransactionResult {
  return { recipients: to.map((rcpt) => ({ rcpt, reply, outcome: 'failed' })), envelopeMs: 0, dataMs: 0 };
}

/** Dot-stuffs (RFC 5321 4.5.2), makes sure the message ends in CRLF, and appends the terminator. */
export function dotStuff(message: Buffer): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  if (message[0] === 0x2e) {
    parts.push(Buffer.from('.'));
  }
  let i = message.indexOf('\n.', 0);
  while (i !== -1) {
    parts.push(message.subarray(start, i + 1), Buffer.from('.'));
    start = i + 1;
    i = message.indexOf('\n.', start);
  }
  parts.push(message.subarray(start));
  const endsWithCrlf = message.length >= 2 && message[message.length - 2] === 13 && message[message.length - 1] === 10;
  parts.push(Buffer.from(endsWithCrlf || message.length === 0 ? '.\r\n' : '\r\n.\r\n'));
  return Buffer.concat(parts);
}

/** A 2xx: what takes MAIL FROM or RCPT TO. */
function positive(code: number | undefined): boolean {
  return code !== undefined && code >= 200 && code < 300;
}
