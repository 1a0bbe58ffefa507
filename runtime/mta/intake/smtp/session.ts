import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { endSocket } from '../../../shared/end-socket';
import { MAX_TRANSACTION_BODY } from '../../../shared/proxy-protocol/envelope';
import { workerAuthFailures, type AuthFailures } from './auth-failures';
import { DataReader } from './data-reader';
import { parseProxyHeader } from '../../../shared/proxy-header';
import { formatReply, reply, type Reply } from './reply';

export interface SessionInfo {
  id: string;
  remoteAddress: string;
  /**
   * A trusted proxy's PROXY header named no client (v1 UNKNOWN, v2 LOCAL): the
   * session is the proxy's own (a health check), not a client's.
   */
  proxyLocal: boolean;
  helo?: string;
  secure: boolean;
  user?: string;
  mailFrom?: string;
  rcptTo: string[];
}

/** What the listener decides; a returned Reply refuses, undefined accepts. */
export interface SessionHandlers {
  onConnect(s: SessionInfo): Reply | undefined;
  onAuth(s: SessionInfo, user: string, password: string): Promise<Reply | undefined>;
  onMailFrom(s: SessionInfo, address: string): Reply | undefined;
  onRcptTo(s: SessionInfo, address: string): Reply | undefined;
  /** The message is complete; the reply is the answer to the final dot. */
  onData(s: SessionInfo, message: Buffer): Promise<Reply>;
  /** The message went over the size limit and was not kept. */
  onOversize(s: SessionInfo): void;
  onClose(s: SessionInfo): void;
  /** Before each command: a reply here ends the session (a node being drained answers 421 at the next command). */
  onCommand?(s: SessionInfo): Reply | undefined;
}

export interface SessionOptions {
  hostname: string;
  banner: string;
  maxMessageSize: number;
  maxRecipients: number;
  socketTimeoutMs: number;
  secureContext?: SecureContext;
  /** TLS from the first byte (port 465 style). */
  implicitTls: boolean;
  allowStartTls: boolean;
  allowInsecureAuth: boolean;
  /** Read a PROXY protocol header before greeting. */
  expectProxy: boolean;
  /** The peer address, read once: each socket.remoteAddress is a getpeername(2). */
  remoteAddress: string;
  /** AUTH failures a session may make; the last one is answered 421 and closes (default 3). */
  maxAuthFailures?: number;
  /** AUTH failures per client address across sessions (default: the worker's table). */
  authFailures?: AuthFailures;
}

/**
 * The longest command line, CRLF included. RFC 5321 4.5.3.1.4 says 512; SMTP
 * AUTH responses and long quoted addresses need more, and anything this long
 * is an attack or a broken client.
 */
export const MAX_COMMAND_LINE = 4096;
// Three wrong passwords and the session ends, as Sun/Oracle Messaging Server
// (disconnectbadauthlimit) and Stalwart (auth.max-failures) do by default: a
// person mistyping retries once or twice; a guesser must reconnect, which the
// per-address table and the connection limits then meter. Postfix has no
// per-session limit of its own (operators add smtpd_client_auth_rate_limit
// or fail2ban), so there is no Postfix number to match.
const MAX_AUTH_FAILURES = 3;
// While a handler runs (a password check, the end-of-DATA fsync) nothing is
// parsed; past this much pipelined input the socket stops reading until it
// is done, so a client cannot grow a session's buffer without bound.
const MAX_BUFFERED_WHILE_BUSY = 1024 * 1024;
const TOO_MANY_FROM_ADDRESS = reply(421, '4.7.0', 'too many authentication failures from your address, try again later');
// Session ids only need to be unique within the process (logs join them with the pid).
let nextSession = 0;
const MAX_UNKNOWN = 10;
const MAIL_RE = /^FROM:\s*<([^<>]*)>(.*)$/i;
const RCPT_RE = /^TO:\s*<([^<>]*)>(.*)$/i;

type State = 'proxy' | 'command' | 'data' | 'auth' | 'closed';

/**
 * One SMTP session of the injection listener: a small state machine over a
 * buffer of bytes. Replies produced while handling one read are written
 * together, so a pipelining client costs one write per batch.
 */
export class SmtpSession {
  readonly info: SessionInfo;
  private socket: Socket;
  private state: State;
  private buffer: Buffer = Buffer.alloc(0);
  private busy = false;
  private pausedWhileBusy = false;
  private data?: DataReader;
  private out: string[] = [];
  private unknown = 0;
  private authFailureCount = 0;
  /** Inside an over-long command line: drop bytes up to its LF, then answer once. */
  private discarding = false;
  private readonly maxSize: number;
  private readonly authFailures: AuthFailures;
  private esmtp = false;
  private authStep?: (line: string) => Promise<void> | void;

  constructor(
    socket: Socket,
    private readonly options: SessionOptions,
    private readonly handlers: SessionHandlers,
  ) {
    this.socket = socket;
    // A message over the proxy link's frame limit could never leave: SIZE says so up front.
    this.maxSize = Math.min(options.maxMessageSize, MAX_TRANSACTION_BODY);
    this.authFailures = options.authFailures ?? workerAuthFailures;
    this.info = { id: (++nextSession).toString(36), remoteAddress: options.remoteAddress, proxyLocal: false, secure: options.implicitTls, rcptTo: [] };
    this.state = options.expectProxy ? 'proxy' : 'command';
    this.attach(socket);
    if (!options.expectProxy) this.greet();
  }

  private attach(socket: Socket): void {
    socket.setNoDelay(true);
    socket.setTimeout(this.options.socketTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('timeout', () => this.close(reply(421, '4.4.2', `${this.options.hostname} timeout, closing connection`)));
    socket.on('error', () => this.socket.destroy());
    socket.on('close', () => {
      if (this.state !== 'closed') {
        this.state = 'closed';
        this.handlers.onClose(this.info);
      }
    });
  }

  private greet(): void {
    const refusal = this.handlers.onConnect(this.info);
    if (refusal) return this.close(refusal);
    this.send(reply(220, undefined, `${this.options.hostname} ESMTP ${this.options.banner}`));
    this.flush();
  }

  private onBytes(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    if (this.busy && this.buffer.length > MAX_BUFFERED_WHILE_BUSY && !this.pausedWhileBusy) {
      this.pausedWhileBusy = true;
      this.socket.pause();
    }
    this.pump();
  }

  /** Handles every complete unit in the buffer, pausing while a handler is asynchronous. */
  private pump(): void {
    while (!this.busy && this.state !== 'closed' && this.buffer.length > 0) {
      if (this.state === 'proxy') {
        const p = parseProxyHeader(this.buffer);
        if (!p.done) break;
        if ('error' in p) return this.close(reply(421, '4.7.0', p.error));
        if (p.info.sourceAddress) this.info.remoteAddress = p.info.sourceAddress;
        else this.info.proxyLocal = true;
        this.buffer = this.buffer.subarray(p.consumed);
        this.state = 'command';
        this.greet();
        continue;
      }
      if (this.state === 'data') {
        const rest = this.data!.push(this.buffer);
        this.buffer = Buffer.alloc(0);
        if (rest === undefined) break;
        this.buffer = rest;
        this.finishData();
        continue;
      }
      const nl = this.buffer.indexOf(10);
      if (nl === -1) {
        // Never run the tail of an over-long line as a command of its own
        // (it could be a smuggled MAIL FROM): drop everything up to its LF.
        if (this.buffer.length >= MAX_COMMAND_LINE) {
          this.discarding = true;
          this.buffer = Buffer.alloc(0);
        }
        break;
      }
      if (this.discarding || nl + 1 > MAX_COMMAND_LINE) {
        this.discarding = false;
        this.buffer = this.buffer.subarray(nl + 1);
        this.lineTooLong();
        continue;
      }
      const line = this.buffer.toString('utf8', 0, nl > 0 && this.buffer[nl - 1] === 13 ? nl - 1 : nl);
      this.buffer = this.buffer.subarray(nl + 1);
      if (this.state === 'auth') this.runAsync(this.authStep!(line));
      else this.command(line);
    }
    this.flush();
  }

  /** One answer for one over-long line, however many reads it took. */
  private lineTooLong(): void {
    if (this.state === 'auth') {
      // RFC 4954 4: the exchange is over, the session is not.
      this.state = 'command';
      return this.send(reply(500, '5.5.6', 'authentication exchange line is too long'));
    }
    if (++this.unknown >= MAX_UNKNOWN) return this.close(reply(421, '4.7.0', 'too many unrecognized commands'));
    this.send(reply(500, '5.5.2', 'line too long'));
  }

  private runAsync(p: Promise<void> | void): void {
    if (!p) return;
    this.busy = true;
    p.then(
      () => undefined,
      () => this.send(reply(451, '4.3.0', 'local error in processing')),
    ).finally(() => {
      this.busy = false;
      if (this.pausedWhileBusy) {
        this.pausedWhileBusy = false;
        this.socket.resume();
      }
      this.pump();
    });
  }

  private send(r: Reply): void {
    this.out.push(formatReply(r));
  }

  private flush(): void {
    if (this.out.length === 0 || this.socket.destroyed) return;
    this.socket.write(this.out.length === 1 ? this.out[0] : this.out.join(''));
    this.out = [];
  }

  private close(r?: Reply): void {
    if (r) this.send(r);
    this.flush();
    if (this.state !== 'closed') {
      this.state = 'closed';
      this.handlers.onClose(this.info);
    }
    // Close our side as soon as the last reply is with the kernel (it still
    // sends it, then the FIN): a client that resets after QUIT then meets a
    // closed socket instead of raising an error object per connection here.
    // Plain TCP usually has it there already: destroy at once, sparing a
    // shutdown(2) that mostly fails anyway. TLS ends with end(), which sends
    // the close_notify.
    const socket = this.socket;
    if (socket.writableLength === 0 && !(socket instanceof TLSSocket)) return void socket.destroy();
    socket.once('finish', () => socket.destroy());
    // The linger is for a peer that never reads.
    endSocket(socket, 1000);
  }

  private resetTransaction(): void {
    this.info.mailFrom = undefined;
    this.info.rcptTo = [];
  }

  private command(line: string): void {
    const closing = this.handlers.onCommand?.(this.info);
    if (closing) return this.close(closing);
    const sp = line.indexOf(' ');
    const verb = (sp === -1 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp === -1 ? '' : line.slice(sp + 1).trim();
    switch (verb) {
      case 'EHLO':
      case 'HELO':
        return this.hello(verb, arg);
      case 'MAIL':
        return this.mail(arg);
      case 'RCPT':
        return this.rcpt(arg);
      case 'DATA':
        return this.startData();
      case 'RSET':
        this.resetTransaction();
        return this.send(reply(250, '2.0.0', 'Ok'));
      case 'NOOP':
        return this.send(reply(250, '2.0.0', 'Ok'));
      case 'QUIT':
        return this.close(reply(221, '2.0.0', 'Bye'));
      case 'VRFY':
        return this.send(reply(252, '2.5.0', 'Cannot VRFY user, but will accept message and attempt delivery'));
      case 'HELP':
        return this.send(reply(214, '2.0.0', 'See RFC 5321'));
      case 'STARTTLS':
        return this.startTls();
      case 'AUTH':
        return this.auth(arg);
      default:
        if (++this.unknown >= MAX_UNKNOWN) return this.close(reply(421, '4.7.0', 'too many unrecognized commands'));
        return this.send(reply(500, '5.5.2', 'command not recognized'));
    }
  }

  private hello(verb: string, arg: string): void {
    if (!arg || /[\x00-\x1f\x7f]/.test(arg) || arg.length > 255) return this.send(reply(501, '5.5.4', `syntax: ${verb} hostname`));
    this.info.helo = arg;
    this.esmtp = verb === 'EHLO';
    this.resetTransaction();
    if (!this.esmtp) return this.send(reply(250, undefined, this.options.hostname));
    const ext = [`${this.options.hostname} greets ${arg} [${this.info.remoteAddress}]`, 'PIPELINING', `SIZE ${this.maxSize}`, '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES'];
    if (this.options.allowStartTls && !this.info.secure) ext.push('STARTTLS');
    if (this.info.secure || this.options.allowInsecureAuth) ext.push('AUTH PLAIN LOGIN');
    this.send(reply(250, undefined, ext));
  }

  private mail(arg: string): void {
    if (!this.info.helo) return this.send(reply(503, '5.5.1', 'send HELO/EHLO first'));
    if (this.info.mailFrom !== undefined) return this.send(reply(503, '5.5.1', 'nested MAIL command'));
    const m = MAIL_RE.exec(arg);
    if (!m) return this.send(reply(501, '5.5.4', 'syntax: MAIL FROM:<address>'));
    for (const param of m[2].trim().split(/\s+/).filter(Boolean)) {
      const [key, value] = param.split('=', 2);
      const k = key.toUpperCase();
      if (k === 'SIZE') {
        if (!/^\d+$/.test(value ?? '')) return this.send(reply(501, '5.5.4', 'bad SIZE parameter'));
        if (Number(value) > this.maxSize) return this.send(reply(552, '5.3.4', 'message size exceeds fixed maximum message size'));
      } else if (k === 'BODY') {
        if (!/^(7BIT|8BITMIME)$/i.test(value ?? '')) return this.send(reply(501, '5.5.4', 'bad BODY parameter'));
      } else if (k !== 'SMTPUTF8' && k !== 'AUTH') {
        return this.send(reply(555, '5.5.4', `unsupported parameter ${k}`));
      }
    }
    const refusal = this.handlers.onMailFrom(this.info, m[1]);
    if (refusal) return this.send(refusal);
    this.info.mailFrom = m[1];
    this.send(reply(250, '2.1.0', 'Ok'));
  }

  private rcpt(arg: string): void {
    if (this.info.mailFrom === undefined) return this.send(reply(503, '5.5.1', 'need MAIL command'));
    const m = RCPT_RE.exec(arg);
    if (!m || m[1] === '') return this.send(reply(501, '5.5.4', 'syntax: RCPT TO:<address>'));
    if (this.info.rcptTo.length >= this.options.maxRecipients) return this.send(reply(452, '4.5.3', 'too many recipients'));
    const refusal = this.handlers.onRcptTo(this.info, m[1]);
    if (refusal) return this.send(refusal);
    this.info.rcptTo.push(m[1]);
    this.send(reply(250, '2.1.5', 'Ok'));
  }

  private startData(): void {
    if (this.info.mailFrom === undefined) return this.send(reply(503, '5.5.1', 'need MAIL command'));
    if (this.info.rcptTo.length === 0) return this.send(reply(503, '5.5.1', 'need RCPT command'));
    this.state = 'data';
    this.data = new DataReader(this.maxSize);
    this.send(reply(354, undefined, 'End data with <CR><LF>.<CR><LF>'));
  }

  private finishData(): void {
    const reader = this.data!;
    this.data = undefined;
    this.state = 'command';
    if (reader.oversize) {
      this.handlers.onOversize(this.info);
      this.send(reply(552, '5.3.4', 'message exceeds fixed maximum message size'));
      this.resetTransaction();
      return;
    }
    const message = reader.message();
    this.runAsync(
      this.handlers.onData(this.info, message).then((r) => {
        this.send(r);
        this.resetTransaction();
      }),
    );
  }

  private startTls(): void {
    if (!this.options.allowStartTls || !this.options.secureContext) return this.send(reply(502, '5.5.1', 'STARTTLS not available'));
    if (this.info.secure) return this.send(reply(503, '5.5.1', 'already in TLS'));
    this.send(reply(220, '2.0.0', 'Ready to start TLS'));
    this.flush();
    // Anything the client pipelined after STARTTLS was sent in the clear: discard
    // it (the STARTTLS command injection attack, CVE-2011-0411).
    this.buffer = Buffer.alloc(0);
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('timeout');
    plain.removeAllListeners('close');
    plain.setTimeout(0);
    const secure = new TLSSocket(plain, { isServer: true, secureContext: this.options.secureContext });
    this.busy = true;
    secure.once('secure', () => {
      this.busy = false;
      if (this.pausedWhileBusy) {
        this.pausedWhileBusy = false;
        secure.resume();
      }
      this.info.secure = true;
      this.info.helo = undefined;
      this.resetTransaction();
      this.pump();
    });
    this.socket = secure;
    this.attach(secure);
  }

  private auth(arg: string): void {
    if (!this.esmtp) return this.send(reply(503, '5.5.1', 'send EHLO first'));
    if (this.info.user) return this.send(reply(503, '5.5.1', 'already authenticated'));
    if (this.info.mailFrom !== undefined) return this.send(reply(503, '5.5.1', 'AUTH not allowed during a mail transaction'));
    if (!this.info.secure && !this.options.allowInsecureAuth) return this.send(reply(538, '5.7.11', 'encryption required for requested authentication mechanism'));
    // Refused before any password is read, so a blocked guesser costs no scrypt.
    if (this.authFailures.blocked(this.info.remoteAddress)) return this.close(TOO_MANY_FROM_ADDRESS);
    const [mech, initial] = arg.split(/\s+/, 2);
    const finish = async (user: string, password: string): Promise<void> => {
      this.state = 'command';
      // The slot is taken before the check and counted only if it fails, so
      // parallel sessions cannot have more guesses in flight than the address has left.
      const address = this.info.remoteAddress;
      if (!(await this.authFailures.acquire(address))) return this.closed ? undefined : this.close(TOO_MANY_FROM_ADDRESS);
      let refusal: Reply | undefined;
      try {
        if (this.closed) return;
        refusal = await this.handlers.onAuth(this.info, user, password);
      } finally {
        this.authFailures.settle(address, refusal?.code === 535);
      }
      if (refusal && refusal.code === 535) return this.authFailed(refusal);
      if (refusal) return this.send(refusal);
      this.info.user = user;
      this.send(reply(235, '2.7.0', 'Authentication successful'));
    };
    const decode = (b64: string): string | undefined => {
      if (b64 === '*') return undefined;
      return Buffer.from(b64, 'base64').toString('utf8');
    };
    const cancelled = (): void => {
      this.state = 'command';
      this.send(reply(501, '5.7.0', 'authentication cancelled'));
    };
    const mechanism = (mech ?? '').toUpperCase();
    if (mechanism === 'PLAIN') {
      const plain = (b64: string): Promise<void> | void => {
        const text = decode(b64);
        if (text === undefined) return cancelled();
        const parts = text.split('\0');
        if (parts.length !== 3) {
          this.state = 'command';
          return this.send(reply(501, '5.5.2', 'malformed PLAIN response'));
        }
        return finish(parts[1], parts[2]);
      };
      if (initial) return this.runAsync(plain(initial));
      this.state = 'auth';
      this.authStep = plain;
      return this.send(reply(334, undefined, ''));
    }
    if (mechanism === 'LOGIN') {
      let user: string | undefined;
      const askPassword = (): void => {
        this.state = 'auth';
        this.authStep = (b64) => {
          const password = decode(b64);
          if (password === undefined) return cancelled();
          return finish(user!, password);
        };
        this.send(reply(334, undefined, 'UGFzc3dvcmQ6'));
      };
      if (initial) {
        user = decode(initial);
        if (user === undefined) return cancelled();
        return askPassword();
      }
      this.state = 'auth';
      this.authStep = (b64) => {
        user = decode(b64);
        if (user === undefined) return cancelled();
        askPassword();
      };
      return this.send(reply(334, undefined, 'VXNlcm5hbWU6'));
    }
    this.send(reply(504, '5.5.4', 'unrecognized authentication mechanism'));
  }

  /** The client went away (or was closed) while something was pending. */
  private get closed(): boolean {
    return this.state === 'closed';
  }

  /** A wrong password (already counted by settle): 535 while tries are left, else one 421 in its place and the session ends. */
  private authFailed(refusal: Reply): void {
    if (this.authFailures.blocked(this.info.remoteAddress)) return this.close(TOO_MANY_FROM_ADDRESS);
    if (++this.authFailureCount >= (this.options.maxAuthFailures ?? MAX_AUTH_FAILURES)) return this.close(reply(421, '4.7.0', 'too many authentication failures, closing connection'));
    this.send(refusal);
  }
}
