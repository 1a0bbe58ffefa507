import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, createServer as createTlsServer } from 'node:tls';
import type { Logger } from 'pino';
import { CidrList } from '../../shared/cidr';
import { ConnectionBound, SMTP_BUSY_REPLY } from './connection-bound';
import type { SmtpListenerConfig, VolleyConfig } from '../../shared/config/types';
import { listen } from '../../shared/listen';
import type { TlsMaterial } from '../../shared/tls-files';
import { metrics } from '../metrics';
import { newMessageId } from '../message-id';
import { isValidMailbox } from './address';
import { checkBody } from './body-check';
import { ClientLimits } from '../../shared/client-limits';
import { Credentials } from './credentials';
import { extractControlHeaders, receivedHeader, volleyIdHeader } from './headers';
import { DRAINING, Intake, IntakeError } from './intake';
import { reply, type Reply } from './smtp/reply';
import { SmtpSession, type SessionHandlers, type SessionInfo } from './smtp/session';

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

/** What a node being drained says to a new session and, in an open one, to the next command. */
const DRAINING_REPLY = reply(DRAINING.smtpCode, DRAINING.enhanced, DRAINING.message);
const acceptedSmtp = metrics.accepted.labels({ via: 'smtp' });

/**
 * One SMTP injection listener. Answers 250 only once the message is durable;
 * everything it refuses gets a reply code, an enhanced code and a plain reason.
 *
 * The protocol engine is our own (./smtp/) rather than the smtp-server
 * package: measured on the 2-core bench with a connection per message,
 * smtp-server alone tops out near 2,700 messages/s per process before any
 * spool work (stream objects, a random id and a 100 ms greeting hold per
 * connection), below the 3,000/s the MTA must take with fsync on.
 */
export class SmtpListener {
  private readonly server: Server;
  private config: VolleyConfig;
  private relayFrom: CidrList;
  private trustedProxies: CidrList;
  private readonly limits: ClientLimits;
  private readonly credentials: Credentials;
  private readonly counted = new Set<string>();
  private readonly sessions = new ConnectionBound(SMTP_BUSY_REPLY);
  private readonly handlers: SessionHandlers;

  constructor(private readonly options: SmtpListenerOptions) {
    this.config = options.config;
    this.relayFrom = new CidrList(options.config.smtp.relayFrom);
    this.trustedProxies = new CidrList(options.config.smtp.trustedProxies);
    this.limits = new ClientLimits(options.config.smtp.maxConnectionsPerClient);
    this.credentials = new Credentials(options.config.users);
    const l = options.listener;
    const secureContext = l.tls === 'none' ? undefined : createSecureContext({ key: options.tls.key, cert: options.tls.cert });
    this.handlers = this.makeHandlers();
    // Label sets bound once: prom-client hashes a label object on every call.
    const connections = metrics.connections.labels({ listener: l.name });
    const onSocket = (socket: Socket): void => {
      connections.inc();
      const smtp = this.config.smtp;
      // Past the bound: 421, and a client that never closes its side does not keep the socket open.
      if (!this.sessions.admit(socket, smtp.maxConnections)) return;
      const remoteAddress = socket.remoteAddress ?? '';
      new SmtpSession(
        socket,
        {
          hostname: this.config.hostname,
          banner: 'Volley',
          maxMessageSize: smtp.maxMessageSize,
          maxRecipients: smtp.maxRecipients,
          socketTimeoutMs: smtp.socketTimeoutMs,
          secureContext,
          implicitTls: l.tls === 'implicit',
          allowStartTls: l.tls === 'starttls',
          // Plain-text AUTH only where the listener has no TLS at all (local runs).
          allowInsecureAuth: l.tls === 'none',
          expectProxy: this.trustedProxies.has(remoteAddress),
          remoteAddress,
        },
        this.handlers,
      );
    };
    this.server = l.tls === 'implicit' ? createTlsServer({ secureContext }, onSocket) : createServer(onSocket);
    this.server.on('error', (err) => options.logger.warn({ err, listener: l.name }, 'smtp: listener error'));
  }

  async listen(): Promise<void> {
    const bind = this.options.bind ?? { address: this.options.listener.address, port: this.options.listener.port };
    await listen(this.server, bind.port, bind.address);
  }

  /** New users, limits and relay networks apply to the next command; open sessions stay open. */
  apply(config: VolleyConfig): void {
    this.config = config;
    this.relayFrom = new CidrList(config.smtp.relayFrom);
    this.trustedProxies = new CidrList(config.smtp.trustedProxies);
    this.limits.setLimit(config.smtp.maxConnectionsPerClient);
    this.credentials.setUsers(config.users);
  }

  /** Stops accepting; open sessions may finish their transaction (bounded by the caller). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      setTimeout(() => {
        this.sessions.destroyAll();
      }, 10_000).unref();
    });
  }

  /** The bound port (useful when listening on port 0). */
  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  private refuse(reason: string, code: number, enhanced: string, text: string): Reply {
    metrics.rejected.inc({ reason });
    return reply(code, enhanced, text);
  }

  private makeHandlers(): SessionHandlers {
    return {
      onConnect: (s) => {
        // A session whose PROXY header named no client (LOCAL / UNKNOWN: the
        // lb's health checks) is the proxy, not a client: counting it would
        // let the lb's clients on its own address get its checks refused, and
        // the lb would take every MTA out of its pool. Only the header says so:
        // a client it names inside the trusted CIDRs (an injector in the NLB's
        // VPC) is a client like any other.
        if (this.options.intake.draining) return DRAINING_REPLY;
        if (s.proxyLocal) return undefined;
        if (!this.limits.tryOpen(s.remoteAddress)) return this.refuse('too-many-connections', 421, '4.7.0', 'too many connections from your address, try again later');
        this.counted.add(s.id);
        return undefined;
      },
      onClose: (s) => {
        if (this.counted.delete(s.id)) this.limits.close(s.remoteAddress);
      },
      onAuth: async (_s, user, password) => {
        try {
          return (await this.credentials.check(user, password)) ? undefined : this.refuse('auth-failed', 535, '5.7.8', 'authentication failed');
        } catch {
          return reply(454, '4.7.0', 'temporary authentication failure');
        }
      },
      onMailFrom: (s, address) => {
        if (this.options.listener.requireAuth && !s.user) return reply(530, '5.7.0', 'authentication required');
        if (address !== '' && !isValidMailbox(address)) return this.refuse('bad-sender', 553, '5.1.7', `invalid sender address <${address}>`);
        return undefined;
      },
      onRcptTo: (s, address) => {
        if (!s.user && !this.relayFrom.has(s.remoteAddress)) return this.refuse('relay-denied', 554, '5.7.1', `<${address}>: relay access denied`);
        if (!isValidMailbox(address)) return this.refuse('bad-recipient', 553, '5.1.3', `invalid recipient address <${address}>`);
        return undefined;
      },
      onCommand: () => (this.options.intake.draining ? DRAINING_REPLY : undefined),
      onOversize: () => metrics.rejected.inc({ reason: 'oversize' }),
      onData: (s, raw) => this.onData(s, raw),
    };
  }

  private async onData(s: SessionInfo, raw: Buffer): Promise<Reply> {
    const t0 = process.hrtime.bigint();
    const problem = checkBody(raw);
    if (problem) return this.refuse(problem, 550, '5.6.0', BODY_PROBLEMS[problem]);
    const { control, message } = extractControlHeaders(raw);
    const id = newMessageId();
    const received = receivedHeader({
      helo: s.helo,
      ip: s.remoteAddress,
      by: this.config.hostname,
      protocol: `ESMTP${s.secure ? 'S' : ''}${s.user ? 'A' : ''}`,
      id,
      rcpt: s.rcptTo.length === 1 ? s.rcptTo[0] : undefined,
    });
    try {
      const entry = await this.options.intake.submit({
        id,
        from: s.mailFrom ?? '',
        to: s.rcptTo.slice(),
        message: Buffer.concat([Buffer.from(received + volleyIdHeader(id), 'latin1'), message]),
        via: 'smtp',
        client: { ip: s.remoteAddress, helo: s.helo, user: s.user },
        pool: control.pool,
        vmta: control.vmta,
        meta: control.meta,
      });
      acceptedSmtp.inc();
      metrics.commitSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
      return reply(250, '2.0.0', `Ok: queued as ${entry.id}`);
    } catch (err) {
      if (err instanceof IntakeError) return this.refuse(err.reason, err.smtpCode, err.enhanced, err.message);
      this.options.logger.error({ err }, 'smtp: intake failed');
      return this.refuse('internal', 451, '4.3.0', 'local error in processing, try again later');
    }
  }
}
