import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { CidrList } from '../../shared/cidr';
import type { SmtpListenerConfig, VolleyConfig } from '../../shared/config/types';
import type { TlsMaterial } from '../../shared/tls-files';
import { metrics } from '../metrics';
import { newMessageId } from '../message-id';
import { isValidMailbox } from './address';
import { checkBody } from './body-check';
import { ClientLimits } from './client-limits';
import { Credentials } from './credentials';
import { installSmtpServerPatches, smtpError } from './smtp-server-patches';
import { extractControlHeaders, receivedHeader } from './headers';
import { Intake, IntakeError } from './intake';

export interface SmtpListenerOptions {
  listener: SmtpListenerConfig;
  config: VolleyConfig;
  intake: Intake;
  tls: TlsMaterial;
  logger: Logger;
  /** Overrides the configured address:port (node-specific, from flags). */
  bind?: { address: string; port: number };
}

const BODY_PROBLEMS = {
  nul: 'message contains a NUL character',
  'bare-lf': 'message contains a bare <LF> (line ends must be <CR><LF>)',
  'bare-cr': 'message contains a bare <CR> (line ends must be <CR><LF>)',
  'long-line': 'message has a line longer than 998 characters (RFC 5322 2.1.1)',
} as const;

/** Trusts a PROXY protocol header only from the configured load balancer CIDRs. */
class VolleySmtpServer extends SMTPServer {
  trustedProxies = new CidrList([]);
  override _expectsProxyHeader(socket: Socket): boolean {
    return this.trustedProxies.has(socket.remoteAddress);
  }
}

/**
 * One SMTP injection listener. Answers 250 only once the message is durable;
 * everything it refuses gets a reply code, an enhanced code and a plain reason.
 */
export class SmtpListener {
  private readonly server: VolleySmtpServer;
  private config: VolleyConfig;
  private relayFrom: CidrList;
  private readonly limits: ClientLimits;
  private readonly credentials: Credentials;
  private readonly counted = new Set<string>();

  constructor(private readonly options: SmtpListenerOptions) {
    installSmtpServerPatches();
    this.config = options.config;
    this.relayFrom = new CidrList(options.config.smtp.relayFrom);
    this.limits = new ClientLimits(options.config.smtp.maxConnectionsPerClient);
    this.credentials = new Credentials(options.config.users);
    const l = options.listener;
    const smtp = options.config.smtp;
    const serverOptions: SMTPServerOptions & { greetingDelayMs: number } = {
      greetingDelayMs: smtp.greetingDelayMs,
      name: options.config.hostname,
      banner: 'Volley ESMTP',
      secure: l.tls === 'implicit',
      key: options.tls.key,
      cert: options.tls.cert,
      disabledCommands: l.tls === 'none' ? ['STARTTLS'] : [],
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: true,
      // Plain-text AUTH is allowed only on listeners configured without TLS (local runs).
      allowInsecureAuth: l.tls === 'none',
      size: smtp.maxMessageSize,
      rejectOversized: true,
      hideENHANCEDSTATUSCODES: false,
      hideDSN: true,
      disableReverseLookup: true,
      maxClients: smtp.maxConnections,
      useProxy: smtp.trustedProxies.length > 0,
      socketTimeout: smtp.socketTimeoutMs,
      closeTimeout: 30_000,
      logger: false,
      onConnect: (session, cb) => this.onConnect(session, cb),
      onClose: (session) => this.onClose(session),
      onAuth: (auth, _session, cb) => {
        this.credentials.check(auth.username ?? '', auth.password ?? '').then(
          (ok) => (ok ? cb(null, { user: auth.username }) : cb(smtpError(535, '5.7.8', 'authentication failed'))),
          () => cb(smtpError(454, '4.7.0', 'temporary authentication failure')),
        );
      },
      onMailFrom: (address, session, cb) => {
        if (l.requireAuth && !session.user) return cb(smtpError(530, '5.7.0', 'authentication required'));
        if (address.address !== '' && !isValidMailbox(address.address)) return cb(this.reject('bad-sender', 553, '5.1.7', `invalid sender address <${address.address}>`));
        cb();
      },
      onRcptTo: (address, session, cb) => {
        if (!session.user && !this.relayFrom.has(session.remoteAddress)) {
          return cb(this.reject('relay-denied', 554, '5.7.1', `<${address.address}>: relay access denied`));
        }
        if (!isValidMailbox(address.address)) return cb(this.reject('bad-recipient', 553, '5.1.3', `invalid recipient address <${address.address}>`));
        if (session.envelope.rcptTo.length >= this.config.smtp.maxRecipients) {
          return cb(this.reject('too-many-recipients', 452, '4.5.3', 'too many recipients'));
        }
        cb();
      },
      onData: (stream, session, cb) => this.onData(stream, session, cb),
    };
    this.server = new VolleySmtpServer(serverOptions);
    this.server.trustedProxies = new CidrList(smtp.trustedProxies);
    this.server.on('error', (err) => options.logger.warn({ err, listener: l.name }, 'smtp: listener error'));
    // SMTP is a lock-step dialogue of short lines: Nagle's algorithm against the
    // client's delayed ACK would add ~40 ms to many replies.
    this.server.server.on('connection', (socket: Socket) => socket.setNoDelay(true));
  }

  listen(): Promise<void> {
    const bind = this.options.bind ?? { address: this.options.listener.address, port: this.options.listener.port };
    return new Promise((resolve, reject) => {
      this.server.server.once('error', reject);
      this.server.listen(bind.port, bind.address, () => {
        this.server.server.removeListener('error', reject);
        resolve();
      });
    });
  }

  /** New users, limits and relay networks apply to the next command; open sessions stay open. */
  apply(config: VolleyConfig): void {
    this.config = config;
    this.relayFrom = new CidrList(config.smtp.relayFrom);
    this.limits.setLimit(config.smtp.maxConnectionsPerClient);
    this.credentials.setUsers(config.users);
    this.server.trustedProxies = new CidrList(config.smtp.trustedProxies);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** The bound port (useful when listening on port 0). */
  get port(): number {
    const a = this.server.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  private reject(reason: string, code: number, enhanced: string, text: string): Error {
    metrics.rejected.inc({ reason });
    return smtpError(code, enhanced, text);
  }

  private onConnect(session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    metrics.connections.inc({ listener: this.options.listener.name });
    if (!this.limits.tryOpen(session.remoteAddress)) {
      return cb(this.reject('too-many-connections', 421, '4.7.0', 'too many connections from your address, try again later'));
    }
    this.counted.add(session.id);
    cb();
  }

  private onClose(session: SMTPServerSession): void {
    if (this.counted.delete(session.id)) this.limits.close(session.remoteAddress);
  }

  private onData(stream: SMTPServerDataStream, session: SMTPServerSession, cb: (err?: Error | null, message?: string) => void): void {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => undefined); // a client that vanishes mid-DATA: nothing was accepted
    stream.on('end', () => {
      if (stream.sizeExceeded) {
        metrics.rejected.inc({ reason: 'oversize' });
        return cb(smtpError(552, '5.3.4', 'message exceeds the maximum size')); // smtp-server answers 552 itself
      }
      const t0 = process.hrtime.bigint();
      const raw = Buffer.concat(chunks);
      const problem = checkBody(raw);
      if (problem) return cb(this.reject(problem, 550, '5.6.0', BODY_PROBLEMS[problem]));
      const { control, message } = extractControlHeaders(raw);
      const id = newMessageId();
      const rcpts = session.envelope.rcptTo.map((r) => r.address);
      const received = receivedHeader({
        helo: session.hostNameAppearsAs,
        ip: session.remoteAddress,
        by: this.config.hostname,
        protocol: `ESMTP${session.secure ? 'S' : ''}${session.user ? 'A' : ''}`,
        id,
        rcpt: rcpts.length === 1 ? rcpts[0] : undefined,
      });
      const mailFrom = session.envelope.mailFrom;
      this.options.intake
        .submit({
          id,
          from: mailFrom ? mailFrom.address : '',
          to: rcpts,
          message: Buffer.concat([Buffer.from(received, 'latin1'), message]),
          via: 'smtp',
          client: { ip: session.remoteAddress, helo: session.hostNameAppearsAs, user: typeof session.user === 'string' ? session.user : undefined },
          pool: control.pool,
          vmta: control.vmta,
          meta: control.meta,
        })
        .then(
          (entry) => {
            metrics.accepted.inc({ via: 'smtp' });
            metrics.commitSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
            cb(null, `2.0.0 Ok: queued as ${entry.id}`);
          },
          (err: unknown) => {
            if (err instanceof IntakeError) return cb(this.reject(err.reason, err.smtpCode, err.enhanced, err.message));
            this.options.logger.error({ err }, 'smtp: intake failed');
            cb(this.reject('internal', 451, '4.3.0', 'local error in processing, try again later'));
          },
        );
    });
  }
}
