import type { TLSSocket } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { ConnectError, type Connector, type OutboundSession, type SessionInfo, type Source, type Target, type TlsPolicy, type TransactionResult } from './connector';
import { outcomeOf, parseReply } from './smtp-reply';

export interface Timeouts {
  connectMs: number;
  greetingMs: number;
  /** Idle time allowed per command; RFC 5321 4.5.3.2 recommends minutes. */
  commandMs: number;
}

// RFC 5321 4.5.3.2: initial 220 5 min, MAIL 5, RCPT 5, DATA init 2, data block 3,
// final dot 10 min. Connect is ours: a dead MX should not hold a slot for minutes.
export const RFC5321_TIMEOUTS: Timeouts = { connectMs: 30_000, greetingMs: 300_000, commandMs: 600_000 };

type NodemailerError = Error & { code?: string; responseCode?: number; response?: string; rejectedErrors?: NodemailerError[]; recipient?: string };

/** Opens SMTP sessions straight from this host, bound to the VMTA's sending IP. */
export class DirectConnector implements Connector {
  constructor(private readonly timeouts: Timeouts = RFC5321_TIMEOUTS) {}

  open(target: Target, source: Source, tls: TlsPolicy): Promise<OutboundSession> {
    const started = Date.now();
    const conn = new SMTPConnection({
      host: target.ip,
      port: target.port,
      servername: target.host,
      name: source.helo,
      localAddress: source.ip,
      ignoreTLS: tls === 'never',
      requireTLS: tls === 'required',
      // Opportunistic STARTTLS does not verify: an MX with a bad certificate
      // still gets encrypted mail rather than plain text (RFC 7435).
      tls: { rejectUnauthorized: false },
      connectionTimeout: this.timeouts.connectMs,
      greetingTimeout: this.timeouts.greetingMs,
      socketTimeout: this.timeouts.commandMs,
      allowInternalNetworkInterfaces: true,
      logger: false,
    });
    return new Promise((resolve, reject) => {
      let settled = false;
      conn.once('error', (err: NodemailerError) => {
        if (settled) return;
        settled = true;
        conn.close();
        reject(classifyConnectError(err));
      });
      conn.connect(() => {
        settled = true;
        const socket = (conn as unknown as { _socket?: TLSSocket })._socket;
        const tlsInfo = conn.secure && socket && typeof socket.getCipher === 'function'
          ? { version: socket.getProtocol() ?? 'unknown', cipher: socket.getCipher().name, verified: socket.authorized === true }
          : undefined;
        const info: SessionInfo = {
          mxHost: target.host,
          mxIp: target.ip,
          port: target.port,
          localIp: socket?.localAddress ?? source.ip,
          helo: source.helo,
          tls: tlsInfo,
          via: 'direct',
          connectMs: Date.now() - started,
        };
        resolve(new DirectSession(conn, info));
      });
    });
  }
}

class DirectSession implements OutboundSession {
  usable = true;
  constructor(
    private readonly conn: SMTPConnection,
    readonly info: SessionInfo,
  ) {
    conn.on('error', () => {
      this.usable = false;
    });
    conn.on('end', () => {
      this.usable = false;
    });
  }

  send(from: string, to: string[], message: Buffer): Promise<TransactionResult> {
    return new Promise<TransactionResult>((resolve, reject) => {
      this.conn.send({ from: from === '' ? false : from, to, size: message.length }, message, (err, info) => {
        const rejected = new Map<string, NodemailerError>();
        const errors = ((err as NodemailerError | null)?.rejectedErrors ?? (info?.rejectedErrors as NodemailerError[] | undefined) ?? []);
        for (const e of errors) if (e.recipient) rejected.set(e.recipient, e);
        if (err && !(err as NodemailerError).responseCode && rejected.size === 0) {
          // No reply to blame: the connection broke mid-transaction.
          this.usable = false;
          return reject(err);
        }
        const final = err ? parseReply((err as NodemailerError).response, (err as NodemailerError).responseCode) : parseReply(info?.response, 250);
        const recipients = to.map((rcpt) => {
          const r = rejected.get(rcpt);
          const reply = r ? parseReply(r.response, r.responseCode) : final;
          return { rcpt, reply, outcome: outcomeOf(reply.code) };
        });
        if (err && (err as NodemailerError).code !== 'EENVELOPE' && (err as NodemailerError).responseCode === undefined) this.usable = false;
        resolve({ recipients, envelopeMs: info?.envelopeTime ?? 0, dataMs: info?.messageTime ?? 0 });
      });
    }).then(async (result) => {
      // After a failed transaction the server expects RSET before the next MAIL.
      if (result.recipients.some((r) => r.outcome !== 'delivered') && this.usable) await this.reset();
      return result;
    });
  }

  private reset(): Promise<void> {
    return new Promise((resolve) => {
      this.conn.reset((err) => {
        if (err) this.usable = false;
        resolve();
      });
    });
  }

  close(): void {
    this.usable = false;
    this.conn.quit();
    setTimeout(() => this.conn.close(), 5000).unref();
  }
}

function classifyConnectError(err: NodemailerError): ConnectError {
  const code = err.code ?? '';
  const msg = err.message;
  if (err.responseCode) return new ConnectError('greeting-rejected', msg, parseReply(err.response, err.responseCode));
  if (/ECONNREFUSED/.test(msg) || code === 'ECONNREFUSED') return new ConnectError('refused', msg);
  if (/EHOSTUNREACH|ENETUNREACH|EADDRNOTAVAIL/.test(msg)) return new ConnectError('unreachable', msg);
  if (code === 'ETIMEDOUT' && /Greeting/i.test(msg)) return new ConnectError('timeout', `no greeting: ${msg}`);
  if (code === 'ETIMEDOUT') return new ConnectError('timeout', msg);
  if (/ECONNRESET|closed unexpectedly|Connection closed/i.test(msg) || code === 'ECONNECTION') return new ConnectError('closed-before-greeting', msg);
  if (/STARTTLS/i.test(msg) || code === 'ETLS') return new ConnectError('tls-required', msg);
  return new ConnectError('error', msg);
}
