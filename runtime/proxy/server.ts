import { isIP, type Socket } from 'node:net';
import { createSecureContext, createServer, type SecureContext, type Server, type TLSSocket } from 'node:tls';
import { CidrList } from '../shared/cidr';
import type { Logger } from '../shared/log';
import { endChannel } from './close-channel';
import { AuthError, FrameChannel, MIN_PING_MS, PROTOCOL_VERSION, PROXY_SIDE_MISSES, ProtocolError, SAFE_ARG, keepAlive, serverHandshake, type Frame } from '../shared/proxy-protocol';
import type { ConnectFailed, Connected, ConnectRequest } from '../shared/proxy-protocol/messages';
import { RFC5321_CLIENT_TIMEOUTS, SmtpClientSession, type ClientTimeouts } from '../shared/smtp/client';
import { ConnectError } from '../shared/smtp/connector';
import { isLegacyTlsPolicy, requirementOf, requirementProblem } from '../shared/smtp/tls-requirement';
import { ClusterThrottles, type MergeMode } from '../shared/throttle/cluster-throttles';
import { serveControl } from './control';
import { MxPool, poolKey, type MxSession } from './pool';
import type { ThrottleAuthority } from './throttle-authority';
import { TransactionPipe } from './transaction-pipe';

export interface ProxyServerOptions {
  /** This proxy's name, in logs and in the welcome frame. */
  name: string;
  listen: { address: string; port: number };
  tls: { key: Buffer; cert: Buffer };
  /** The shared secret (>= 32 bytes). */
  secret: Buffer;
  /** During a rotation, the secret being replaced (>= 32 bytes): MTAs may still prove it. */
  previousSecret?: Buffer;
  /** Source CIDRs MTAs may connect from; empty or undefined: any. */
  allowFrom?: string[];
  /** The sending IPs this proxy holds (bound on this host). */
  sendingIps: string[];
  /** How long an idle MX session is kept for reuse. */
  idleTimeoutMs: number;
  maxTransactionsPerSession: number;
  handshakeTimeoutMs?: number;
  /** An authenticated MTA connection that sends nothing for this long is closed. */
  clientIdleTimeoutMs?: number;
  /** MX-leg timeouts unless a connect request names its own. */
  mxTimeouts?: ClientTimeouts;
  /** mx_tls_ca_file: the file, and the trust store built from it (mx-trust.ts) that `verify` sessions to MXes check against; node's store when absent. */
  mxTrust?: { file: string; context: SecureContext };
  /** How the control channel merges the MTAs' throttle limits; default average. */
  throttleMerge?: MergeMode;
  logger: Logger;
}

export interface ProxyStats {
  clients: number;
  authenticated: number;
  /** Of those, the links that proved the previous secret (a rotation not finished on the MTAs). */
  authenticatedPrevious: number;
  refused: number;
  mxOpened: number;
  mxReused: number;
  mxIdle: number;
  transactions: number;
}

/** What a reload did: the settings applied, and those that need a restart and were kept. */
export interface ReloadOutcome {
  applied: string[];
  kept: { setting: string; running: string; wanted: string }[];
  /** Idle MX sessions QUIT because their sending IP was removed. */
  retired: number;
  /** MTA links the new allow_from or secrets no longer admit: closed now, or after their transaction. */
  revoked: { closed: number; afterTransaction: number };
}

/** An MTA link, from its TLS handshake on. */
interface Link {
  /** Inside a transaction (stop and revocation let it finish). */
  busy: boolean;
  mx?: MxSession;
  remote?: string;
  /** The secret it proved; undefined while it is still authenticating. */
  secret?: Buffer;
  /** A reload no longer admits it: it ends after the transaction in flight. */
  revoked: boolean;
}

/**
 * `volley proxy`: holds sending IPs and opens MX sessions from them for
 * authenticated MTAs, keeping idle ones for whichever MTA comes next.
 * Stateless: everything it holds can be dropped by a restart.
 */
export class ProxyServer {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  /** Authenticated-or-handshaking MTA links, and whether each is inside a transaction (stop lets those finish). */
  private readonly links = new Map<TLSSocket, Link>();
  private stopping = false;
  private linkClosed?: () => void;
  // The running settings; a reload replaces them (and allow/hosted) for what comes next.
  private options: ProxyServerOptions;
  private allow?: CidrList;
  private hosted: Set<string>;
  readonly pool: MxPool;
  /** Cluster-wide throttles for the MTAs on the control channel. */
  readonly throttles: ClusterThrottles;
  private readonly counters = { authenticated: 0, authenticatedPrevious: 0, refused: 0, mxOpened: 0, transactions: 0 };
  private readonly log: Logger;
  /** Who decides control-channel acquires: `throttles`, or the node's primary when this is one worker of several. */
  private readonly authority: ThrottleAuthority;
  /** Under --workers: before opening an MX session, one other worker of the node QUITs an idle one for that key. */
  private readonly beforeOpen?: (key: string) => Promise<void>;

  constructor(options: ProxyServerOptions, node?: { authority: ThrottleAuthority; beforeOpen: (key: string) => Promise<void> }) {
    this.options = options;
    this.allow = allowList(options.allowFrom);
    this.hosted = new Set(options.sendingIps);
    this.pool = new MxPool(options.idleTimeoutMs, options.maxTransactionsPerSession);
    this.log = options.logger;
    this.throttles = new ClusterThrottles(options.throttleMerge ?? 'average');
    this.authority = node?.authority ?? this.throttles;
    this.beforeOpen = node?.beforeOpen;
  }

  async start(): Promise<{ address: string; port: number }> {
    // handshakeTimeout is node's cap on the TLS handshake, read once here; the
    // authentication after it follows the live handshake_timeout.
    const server = createServer({ ...secureContextOptions(this.options), handshakeTimeout: this.options.handshakeTimeoutMs ?? 10_000 });
    this.server = server;
    server.on('connection', (raw: Socket) => {
      if (!this.allowed(raw.remoteAddress)) {
        this.counters.refused++;
        this.log.warn({ remote: raw.remoteAddress }, 'proxy: connection refused: source address not in allow_from');
        raw.destroy();
        return;
      }
      this.sockets.add(raw);
      raw.once('close', () => this.sockets.delete(raw));
    });
    server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
      this.counters.refused++;
      this.log.warn({ remote: socket.remoteAddress, code: err.code }, `proxy: TLS handshake failed (plain TCP or not our protocol): ${err.message.slice(0, 120)}`);
      socket.destroy();
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      void this.serve(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.listen.port, this.options.listen.address, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err }, 'proxy: listener error'));
    const a = server.address() as { address: string; port: number };
    // Whether a previous secret is taken too, so a rotation left unfinished shows in the log.
    this.log.info({ address: a.address, port: a.port, sending_ips: this.options.sendingIps, name: this.options.name, version: PROTOCOL_VERSION, previous_secret: this.options.previousSecret !== undefined }, 'proxy: listening');
    return { address: a.address, port: a.port };
  }

  /** True while the MTA listener is bound. */
  get listening(): boolean {
    return this.server?.listening === true;
  }

  /** True once stop() began: transactions in flight may still be finishing. */
  get draining(): boolean {
    return this.stopping;
  }

  /** The running settings (a reload replaces them). */
  get settings(): Readonly<ProxyServerOptions> {
    return this.options;
  }

  /**
   * Applies a new config without dropping anything open: MTA links, control
   * channels and MX sessions stay. New connections get the new TLS pair,
   * secret, allow_from and timeouts; a removed sending IP is refused to new
   * connects, its idle MX sessions are QUIT and its sessions in use finish
   * their transaction and are then closed instead of pooled. The listen
   * address and throttle_merge need a restart: they are kept and reported.
   * A link the new allow_from or secrets no longer admit is cut: at once when
   * idle (or still authenticating), after its transaction when one is in
   * flight, as a removed sending IP's MX sessions are (so narrowing allow_from
   * or ending a rotation shuts out a host that already had a link).
   * Throws (changing nothing) when the TLS pair is unusable.
   */
  reload(next: ProxyServerOptions): ReloadOutcome {
    const old = this.options;
    const kept: ReloadOutcome['kept'] = [];
    const listenOf = (l: ProxyServerOptions['listen']): string => `${l.address}:${l.port}`;
    if (listenOf(next.listen) !== listenOf(old.listen)) kept.push({ setting: 'listen', running: listenOf(old.listen), wanted: listenOf(next.listen) });
    const oldMerge = old.throttleMerge ?? 'average';
    const nextMerge = next.throttleMerge ?? 'average';
    if (nextMerge !== oldMerge) kept.push({ setting: 'throttle_merge', running: oldMerge, wanted: nextMerge });
    const tlsChanged = !next.tls.key.equals(old.tls.key) || !next.tls.cert.equals(old.tls.cert);
    // First, as it is the one step that can fail: a bad pair leaves everything as it was.
    if (tlsChanged) {
      createSecureContext(secureContextOptions(next)); // throws on a bad or mismatched pair
      this.server?.setSecureContext(secureContextOptions(next));
    }
    const applied: string[] = [];
    const changed = (setting: string, a: unknown, b: unknown): void => {
      if (JSON.stringify(a) !== JSON.stringify(b)) applied.push(setting);
    };
    if (tlsChanged) applied.push('tls');
    if (!next.secret.equals(old.secret)) applied.push('secret');
    if (!sameSecret(next.previousSecret, old.previousSecret)) applied.push('previous_secret');
    changed('name', old.name, next.name);
    changed('allow_from', old.allowFrom ?? [], next.allowFrom ?? []);
    changed('sending_ips', old.sendingIps, next.sendingIps);
    changed('idle_timeout', old.idleTimeoutMs, next.idleTimeoutMs);
    changed('max_transactions_per_session', old.maxTransactionsPerSession, next.maxTransactionsPerSession);
    changed('handshake_timeout', old.handshakeTimeoutMs, next.handshakeTimeoutMs);
    changed('client_idle_timeout', old.clientIdleTimeoutMs, next.clientIdleTimeoutMs);
    changed('mx_timeouts', old.mxTimeouts, next.mxTimeouts);
    // The file is read again on every reload; a changed content under the same name applies without being listed.
    changed('mx_tls_ca_file', old.mxTrust?.file, next.mxTrust?.file);
    this.options = { ...next, listen: old.listen, throttleMerge: old.throttleMerge, logger: old.logger };
    this.allow = allowList(next.allowFrom);
    this.hosted = new Set(next.sendingIps);
    this.pool.idleMs = next.idleTimeoutMs;
    this.pool.maxTransactions = next.maxTransactionsPerSession;
    const retired = this.pool.closeWhere((mx) => !this.hosted.has(mx.sendingIp));
    return { applied, kept, retired, revoked: this.revokeLinks() };
  }

  private allowed(remote: string | undefined): boolean {
    return !this.allow || this.allow.has(remote);
  }

  /** Whether the running settings still admit a link from `remote` that proved `secret` (undefined: not yet proved). */
  private admits(remote: string | undefined, secret: Buffer | undefined): boolean {
    if (!this.allowed(remote)) return false;
    return secret === undefined || secret.equals(this.options.secret) || (this.options.previousSecret !== undefined && secret.equals(this.options.previousSecret));
  }

  private revokeLinks(): ReloadOutcome['revoked'] {
    const revoked = { closed: 0, afterTransaction: 0 };
    for (const [socket, link] of this.links) {
      if (link.revoked || this.admits(link.remote, link.secret)) continue;
      link.revoked = true;
      const why = this.allowed(link.remote) ? 'its secret is no longer accepted' : 'its address is no longer in allow_from';
      if (link.busy) {
        revoked.afterTransaction++;
        this.log.warn({ remote: link.remote }, `proxy: reload: MTA link no longer admitted (${why}); closing it after its transaction`);
      } else {
        revoked.closed++;
        this.log.warn({ remote: link.remote }, `proxy: reload: MTA link no longer admitted (${why}); closed`);
        socket.destroy();
      }
    }
    return revoked;
  }

  stats(): ProxyStats {
    return { clients: this.sockets.size, ...this.counters, mxReused: this.pool.reused, mxIdle: this.pool.size };
  }

  /**
   * Stops taking connections, QUITs idle MX sessions and closes every MTA
   * link that is not inside a transaction. Transactions in flight get up to
   * `graceMs` to finish (their MTA gets its answer, so a message the MX took
   * is not sent twice); then everything left is cut.
   */
  async stop(graceMs = 0): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    this.stopping = true;
    this.pool.stopped = true;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    this.pool.closeAll();
    for (const [socket, link] of this.links) if (!link.busy) socket.destroy();
    const busy = (): number => [...this.links.values()].filter((l) => l.busy).length;
    if (busy() > 0 && graceMs > 0) {
      this.log.info({ transactions: busy(), grace_ms: graceMs }, 'proxy: stopping: waiting for transactions in flight');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.linkClosed = () => {
          if (busy() > 0) return;
          clearTimeout(timer);
          resolve();
        };
      });
      this.linkClosed = undefined;
      if (busy() > 0) this.log.warn({ transactions: busy() }, 'proxy: stop grace over: transactions still in flight are cut');
    }
    // A transaction still waiting on its MX past the grace: end that MX session
    // too, or it would hang on until its final-dot timeout.
    for (const [socket, link] of this.links) {
      link.mx?.session.close();
      socket.destroy();
    }
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private async serve(socket: TLSSocket): Promise<void> {
    const remote = socket.remoteAddress;
    const link: Link = { busy: false, remote, revoked: false };
    this.links.set(socket, link);
    socket.once('close', () => {
      this.links.delete(socket);
      this.linkClosed?.();
    });
    const channel = new FrameChannel(socket);
    let mta: string | undefined;
    let kind = 'delivery';
    let previous = false;
    let pingMs: number | undefined;
    try {
      const secrets = [this.options.secret, ...(this.options.previousSecret ? [this.options.previousSecret] : [])];
      const hello = await serverHandshake(channel, secrets, {
        timeoutMs: this.options.handshakeTimeoutMs ?? 10_000,
        name: this.options.name,
        sendingIps: this.options.sendingIps,
        channels: ['delivery', 'control'],
        keepalive: true,
        pipelining: true,
      });
      mta = hello.name;
      kind = hello.channel;
      link.secret = secrets[hello.secretIndex];
      previous = hello.secretIndex > 0;
      pingMs = hello.pingMs;
      // A reload during the handshake (TLS or HMAC) may have shut this address or secret out.
      if (link.revoked || !this.admits(remote, link.secret)) throw new AuthError('not-allowed', 'a reload no longer admits this address or secret');
    } catch (err) {
      this.counters.refused++;
      const reason = err instanceof AuthError ? err.reason : 'protocol';
      this.log.warn({ remote, reason }, `proxy: MTA authentication failed, connection closed: ${(err as Error).message}`);
      channel.close();
      return;
    }
    if (this.stopping) {
      channel.close();
      return;
    }
    this.counters.authenticated++;
    if (previous) this.counters.authenticatedPrevious++;
    const log = this.log.child({ remote, mta });
    // The previous secret is named so the operator sees which MTAs still hold back a rotation.
    if (previous) log.warn('proxy: MTA authenticated with the previous secret (a rotation is not finished on this MTA)');
    else log.info('proxy: MTA authenticated');
    // An MTA that announced its ping interval is watched at that pace: one
    // gone silent (a dead host) is closed within 3-4 intervals, freeing its
    // permits and links, not after client_idle_timeout; and it gets a pong
    // each interval, which its own uploads never hold up (see heartbeat.ts).
    if (pingMs !== undefined) keepAlive(channel, { intervalMs: Math.min(Math.max(pingMs, MIN_PING_MS), this.options.clientIdleTimeoutMs ?? 300_000), misses: PROXY_SIDE_MISSES, ping: false, beacon: true });
    // Pings are answered at once, even while a connect or a transaction is
    // under way: the MTA's liveness check counts on the pong.
    channel.onUnsolicited = (f) => {
      if (f.header.t !== 'ping') return false;
      if (channel.open) channel.send({ t: 'pong' });
      return true;
    };
    if (kind === 'control') return serveControl(channel, this.authority, { mta, idleTimeoutMs: this.options.clientIdleTimeoutMs ?? 300_000, log });
    let pipe: TransactionPipe | undefined;
    const idleMs = this.options.clientIdleTimeoutMs ?? 300_000;
    let idleTimer: NodeJS.Timeout | undefined;
    let idleArmed = false;
    let waiting = false;
    // The idle bound runs only while the loop waits with nothing in flight:
    // a transaction waits on its MX as long as its own timeouts allow. One
    // timer per link, restarted (refresh) rather than made anew per frame,
    // and left running while disarmed: firing then does nothing.
    const armIdle = (): void => {
      idleArmed = true;
      if (idleTimer) idleTimer.refresh();
      else
        idleTimer = setTimeout(() => {
          if (idleArmed) channel.close(Object.assign(new ProtocolError(`no frame from the peer in ${idleMs} ms`), { code: 'ETIMEDOUT' }));
        }, idleMs);
    };
    channel.onClose(() => clearTimeout(idleTimer));
    const drained = (): void => {
      link.busy = false;
      link.mx = undefined;
      // Stopping, or no longer admitted (a reload): the MTA has every answer;
      // the link ends here, politely, so the last answers written are not
      // lost to a reset (the loop's wait fails and the catch below logs why).
      if (this.stopping || link.revoked) {
        channel.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      } else if (waiting) armIdle();
    };
    const hooks = { hosted: (ip: string) => this.hosted.has(ip), counted: () => void this.counters.transactions++, drained };
    try {
      for (;;) {
        if (!pipe || pipe.inFlight === 0) armIdle();
        waiting = true;
        let frame: Frame;
        try {
          // Read on while transactions are in flight: the next one may be pipelined behind them (transaction-pipe.ts).
          frame = await channel.next();
        } finally {
          waiting = false;
          idleArmed = false;
        }
        switch (frame.header.t) {
          case 'ping':
            channel.send({ t: 'pong' });
            break;
          case 'connect': {
            if (pipe?.open) throw new ProtocolError('connect while a session is open');
            if (pipe) await pipe.drain();
            pipe = undefined;
            const mx = await this.connect(frame, channel, log);
            if (mx) pipe = new TransactionPipe(mx, channel, hooks);
            break;
          }
          case 'transaction':
            if (!pipe) throw new ProtocolError('transaction without a session');
            // Pipelined behind one in flight as the proxy began to stop or the link was revoked: never sent, the MTA retries it.
            if (this.stopping) pipe.refuse('the proxy is stopping');
            else if (link.revoked) pipe.refuse('this MTA link is no longer admitted');
            else pipe.take(frame);
            link.busy = true;
            link.mx = pipe.mx;
            break;
          case 'release':
            if (pipe) {
              await pipe.drain();
              if (pipe.mx) this.pool.put(pipe.mx, frame.header.reuse !== false && this.hosted.has(pipe.mx.sendingIp));
            }
            pipe = undefined;
            break;
          default:
            throw new ProtocolError(`unexpected frame type ${JSON.stringify(frame.header.t).slice(0, 40)}`);
        }
      }
    } catch (err) {
      if (this.stopping) log.info('proxy: stopping, MTA connection closed');
      else if (link.revoked) log.info('proxy: MTA link no longer admitted after a reload, closed');
      else endChannel(channel, err, log, { idle: 'proxy: MTA connection idle, closed', closed: 'proxy: MTA closed the connection', protocol: 'proxy: protocol error, MTA connection closed' }, 'debug');
      if (channel.open) channel.close();
      // Once its transactions are over the MX session is clean: keep it for
      // others (one whose answer could not reach the MTA was QUIT instead).
      const last = pipe;
      if (last) await last.drain();
      if (last?.mx) this.pool.put(last.mx, this.hosted.has(last.mx.sendingIp));
    }
  }

  private async connect(frame: Frame, channel: FrameChannel, log: Logger): Promise<MxSession | undefined> {
    const req = frame.header as unknown as ConnectRequest;
    const fail = (kind: ConnectFailed['kind'], message: string, reply?: ConnectFailed['reply'], tls?: ConnectFailed['tls']): undefined => {
      const answer: ConnectFailed = { t: 'connect_failed', kind, message, ...(reply ? { reply } : {}), ...(tls ? { tls } : {}) };
      channel.send(answer);
      log.info({ sending_ip: req.sending_ip, mx: req.mx, kind }, `proxy: connect failed: ${message}`);
      return undefined;
    };
    // An MTA from before the TLS ladder sends the old policy names: mapped, so proxies can be upgraded first.
    if (isLegacyTlsPolicy(req.tls)) req.tls = requirementOf(req.tls);
    const bad = validateConnect(req);
    if (bad) return fail('error', `bad connect request: ${bad}`);
    if (!this.hosted.has(req.sending_ip)) return fail('ip-not-hosted', `${req.sending_ip} is not hosted by proxy ${this.options.name}`);
    const key = poolKey(req.sending_ip, req.mx.ip, req.mx.port, req.helo, req.tls);
    let mx = this.pool.take(key);
    const reused = mx !== undefined;
    if (!mx) {
      await this.beforeOpen?.(key);
      const timeouts = { ...(this.options.mxTimeouts ?? RFC5321_CLIENT_TIMEOUTS), ...pickTimeouts(req.timeouts) };
      try {
        const trust = this.options.mxTrust ? { secureContext: this.options.mxTrust.context } : {};
        const session = await SmtpClientSession.open(req.mx, { ip: req.sending_ip, helo: req.helo }, req.tls, timeouts, trust);
        this.counters.mxOpened++;
        mx = { session, key, sendingIp: req.sending_ip, transactions: 0, capabilities: session.capabilities };
      } catch (err) {
        if (err instanceof ConnectError) return fail(err.kind, err.message, err.reply, err.tls);
        return fail('error', (err as Error).message);
      }
    }
    const info = mx.session.info;
    const answer: Connected = {
      t: 'connected',
      reused,
      session: {
        mx_host: info.mxHost,
        mx_ip: info.mxIp,
        port: info.port,
        local_ip: info.localIp,
        helo: info.helo,
        greeting: info.greeting,
        capabilities: mx.capabilities,
        tls: info.tls,
        connect_ms: reused ? 0 : info.connectMs,
        transactions: mx.transactions,
      },
    };
    try {
      channel.send(answer);
    } catch (err) {
      this.pool.put(mx, true);
      throw err;
    }
    log.debug({ sending_ip: req.sending_ip, mx: `${req.mx.ip}:${req.mx.port}`, reused }, 'proxy: session handed out');
    return mx;
  }
}

function sameSecret(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.equals(b);
}

function allowList(cidrs: string[] | undefined): CidrList | undefined {
  return cidrs && cidrs.length > 0 ? new CidrList(cidrs) : undefined;
}

function secureContextOptions(options: ProxyServerOptions): { key: Buffer; cert: Buffer; minVersion: 'TLSv1.2' } {
  return { key: options.tls.key, cert: options.tls.cert, minVersion: 'TLSv1.2' };
}

function validateConnect(req: ConnectRequest): string | undefined {
  if (typeof req.sending_ip !== 'string' || !isIP(req.sending_ip)) return 'sending_ip is not an IP address';
  if (typeof req.mx !== 'object' || req.mx === null) return 'mx missing';
  if (typeof req.mx.ip !== 'string' || !isIP(req.mx.ip)) return 'mx.ip is not an IP address';
  if (typeof req.mx.host !== 'string' || req.mx.host.length > 255) return 'mx.host missing';
  if (!Number.isInteger(req.mx.port) || req.mx.port < 1 || req.mx.port > 65535) return 'mx.port out of range';
  if (typeof req.helo !== 'string' || req.helo.length === 0 || req.helo.length > 255 || !SAFE_ARG.test(req.helo)) return 'helo is not a host name';
  const tls = requirementProblem(req.tls);
  if (tls) return tls;
  return undefined;
}

function pickTimeouts(t: unknown): Partial<ClientTimeouts> {
  if (typeof t !== 'object' || t === null) return {};
  const out: Partial<ClientTimeouts> = {};
  for (const k of ['connectMs', 'greetingMs', 'commandMs', 'dataInitMs', 'dataBlockMs', 'finalDotMs', 'tlsMs'] as const) {
    const v = (t as Record<string, unknown>)[k];
    if (typeof v === 'number' && v > 0 && v <= 3_600_000) out[k] = v;
  }
  return out;
}

