import type { Logger } from '../../../shared/log';
import { VolleyError } from '../../../shared/errors';
import { LINK_PING_MS, ProtocolError, dialProxy, resultProblem, endpointName, ProxyLinkError, type Frame, type FrameChannel, type ProxyEndpoint } from '../../../shared/proxy-protocol/index';
import { CONNECT_FAILURES, type ConnectRequest, type WireSession } from '../../../shared/proxy-protocol/messages';
import { RFC5321_CLIENT_TIMEOUTS, type ClientTimeouts } from '../../../shared/smtp/client';
import { ConnectError, type Connector, type OutboundSession, type RecipientResult, type SendOptions, type SessionInfo, type Source, type Target, type TlsOutcome, type TlsRequirement, type TransactionResult } from '../../../shared/smtp/connector';
import type { SmtpReply } from '../../../shared/smtp/reply';

export type { ProxyEndpoint } from '../../../shared/proxy-protocol/index';

/**
 * Options of the MTA's connector to the proxy tier.
 *
 *   proxies   which proxies hold a sending IP, tried in order: a map
 *             { '203.0.113.10': [{ host, port, fingerprint }] } or a function
 *             of the sending IP. An IP with no proxy fails with 'ip-not-hosted'.
 *             Each endpoint pins `fingerprint` (SHA-256 of the proxy's
 *             certificate) or names a `ca`.
 *   secret    the shared secret (>= 32 bytes), e.g. loadSecret({ file }).
 *   timeouts  the MX leg's timeouts, sent with each connect (the proxy
 *             applies them); the connector waits that long plus `marginMs`.
 *   link      the MTA↔proxy leg: TCP+TLS connect and handshake timeouts,
 *             idle authenticated connections kept per proxy and for how long.
 *   name      this MTA's name, in the proxy's logs.
 */
export interface ProxyConnectorOptions {
  proxies: Record<string, ProxyEndpoint[]> | ((sendingIp: string) => ProxyEndpoint[] | undefined);
  secret: Buffer;
  timeouts?: Partial<ClientTimeouts>;
  link?: {
    connectMs?: number;
    handshakeMs?: number;
    /** Added to the MX-leg timeout when waiting for the proxy's answer. */
    marginMs?: number;
    maxIdlePerProxy?: number;
    idleMs?: number;
    /** Keep-alive ping interval (default LINK_PING_MS); a proxy silent for 2 of them is taken for dead (heartbeat.ts). */
    pingMs?: number;
  };
  name?: string;
  logger: Logger;
}

interface Link {
  channel: FrameChannel;
  proxy: string;
  /** The proxy's welcome said it takes a transaction before answering the previous one (codec.ts, PIPELINING). */
  pipelining: boolean;
  idleTimer?: NodeJS.Timeout;
}

/**
 * The code of every failure of the MTA<->proxy link itself (not an answer
 * about the MX): the engine records such deferrals with error_kind
 * "proxy-link" and retries them soon (attempt-recorder.ts).
 */
export const PROXY_LINK_CODE = 'EPROXYLINK';

/** How long a proxy whose link failed is tried after the others (the control link's redial ceiling). */
export const PROXY_DOWN_MS = 5_000;

/** A ConnectError raised by the proxy link rather than the MX: kind 'error', with the stage and proxy. */
export class ProxyConnectError extends ConnectError {
  readonly code = PROXY_LINK_CODE;
  constructor(
    readonly proxy: string,
    readonly stage: 'connect' | 'tls' | 'auth' | 'protocol',
    message: string,
  ) {
    super('error', message);
    this.name = 'ProxyConnectError';
  }
}

/**
 * Delivers through Volley proxies: each session is an MX session the proxy
 * owns, reached over an authenticated TLS link kept in a small pool per proxy
 * (links carry session after session). A proxy's answer maps to ConnectError
 * kinds as direct delivery's do, so the attempt log reads the same.
 */
export class ProxyConnector implements Connector {
  private readonly idle = new Map<string, Link[]>();
  /** Proxies whose link failed lately, until when they are tried last. */
  private readonly downUntil = new Map<string, number>();
  private readonly timeouts: ClientTimeouts;
  private readonly link: Required<NonNullable<ProxyConnectorOptions['link']>>;
  private closed = false;
  /** Links opened (TLS + handshake) since start, for tests and metrics. */
  linksOpened = 0;

  constructor(private readonly options: ProxyConnectorOptions) {
    this.timeouts = { ...RFC5321_CLIENT_TIMEOUTS, ...options.timeouts };
    this.link = { connectMs: 10_000, handshakeMs: 10_000, marginMs: 5_000, maxIdlePerProxy: 8, idleMs: 60_000, pingMs: LINK_PING_MS, ...options.link };
  }

  private endpointsFor(ip: string): ProxyEndpoint[] {
    const p = this.options.proxies;
    return (typeof p === 'function' ? p(ip) : p[ip]) ?? [];
  }

  async open(target: Target, source: Source, tls: TlsRequirement): Promise<OutboundSession> {
    if (!source.ip) throw new ConnectError('ip-not-hosted', 'delivery through the proxy tier needs a sending IP');
    const endpoints = this.endpointsFor(source.ip);
    if (endpoints.length === 0) throw new ConnectError('ip-not-hosted', `no proxy is configured for ${source.ip}`);
    let last: ConnectError | undefined;
    // A proxy whose link just failed is tried last for a while: each session
    // would otherwise pay a dial into a dead host (connectMs) before reaching
    // the proxy that works. Still tried when nothing else is left.
    const now = Date.now();
    const ordered = [...endpoints.filter((e) => !this.isDown(e, now)), ...endpoints.filter((e) => this.isDown(e, now))];
    for (const endpoint of ordered) {
      try {
        return await this.openVia(endpoint, target, source, tls);
      } catch (err) {
        if (!(err instanceof ConnectError)) throw err;
        last = err;
        if (err instanceof ProxyConnectError) this.downUntil.set(endpointName(endpoint), Date.now() + PROXY_DOWN_MS);
        // An answer about the MX is final; a proxy that cannot help is not.
        if (!(err instanceof ProxyConnectError) && err.kind !== 'ip-not-hosted') throw err;
        this.options.logger.warn({ proxy: endpointName(endpoint), sending_ip: source.ip, kind: err.kind }, `proxy connector: ${err.message}; trying the next proxy`);
      }
    }
    throw last!;
  }

  private isDown(endpoint: ProxyEndpoint, now: number): boolean {
    const until = this.downUntil.get(endpointName(endpoint));
    if (until === undefined) return false;
    if (until > now) return true;
    this.downUntil.delete(endpointName(endpoint));
    return false;
  }

  private async openVia(endpoint: ProxyEndpoint, target: Target, source: Source, tls: TlsRequirement): Promise<OutboundSession> {
    const proxy = endpointName(endpoint);
    const started = Date.now();
    // A pooled link may have died while idle (a proxy restart): the first
    // exchange tells, and the next pooled link or a fresh one is tried.
    for (;;) {
      const { link, fresh } = await this.acquire(endpoint);
      const request: ConnectRequest = {
        t: 'connect',
        sending_ip: source.ip!,
        mx: { host: target.host, ip: target.ip, port: target.port },
        helo: source.helo,
        tls,
        timeouts: this.timeouts,
      };
      let answer: Frame;
      try {
        link.channel.send(request);
        answer = await link.channel.next(this.connectBudget());
      } catch (err) {
        link.channel.close();
        // A pooled link the proxy closed (a restart): the next one may do. One
        // that went silent: the proxy is likely dead, try the next proxy.
        const code = (err as { code?: string }).code;
        if (!fresh && code !== 'ETIMEDOUT' && code !== 'ELINKDEAD') continue;
        throw new ProxyConnectError(proxy, 'protocol', `proxy ${proxy}: link lost during connect: ${(err as Error).message}`);
      }
      const h = answer.header;
      if (h.t === 'connected') {
        const wire = h.session as WireSession;
        return new ProxySession(this, link, sessionInfo(wire, proxy, source, Date.now() - started), Boolean(h.reused), wire.capabilities ?? []);
      }
      if (h.t === 'connect_failed') {
        this.release(link);
        const kind = CONNECT_FAILURES.includes(h.kind as never) ? (h.kind as ConnectError['kind']) : 'error';
        throw new ConnectError(kind, `via proxy ${proxy}: ${String(h.message)}`, h.reply as SmtpReply | undefined, h.tls as TlsOutcome | undefined);
      }
      link.channel.close();
      throw new ProxyConnectError(proxy, 'protocol', `proxy ${proxy}: unexpected answer ${JSON.stringify(h.t).slice(0, 40)} to connect`);
    }
  }

  private connectBudget(): number {
    const t = this.timeouts;
    // connect, greeting, EHLO, STARTTLS, the handshake, EHLO again; under
    // `may` a failed handshake then costs a second connect, greeting and EHLO.
    return 2 * (t.connectMs + t.greetingMs) + 4 * t.commandMs + t.tlsMs + this.link.marginMs;
  }

  /** How long a transaction's answer may take once sent: its MX exchanges and the link's margin. */
  transactionBudget(recipients: number): number {
    const t = this.timeouts;
    return (recipients + 2) * t.commandMs + t.dataInitMs + t.finalDotMs + this.link.marginMs;
  }

  private async acquire(endpoint: ProxyEndpoint): Promise<{ link: Link; fresh: boolean }> {
    const proxy = endpointName(endpoint);
    const list = this.idle.get(proxy);
    while (list && list.length > 0) {
      const link = list.pop()!;
      clearTimeout(link.idleTimer);
      if (link.channel.open) return { link, fresh: false };
    }
    try {
      const { channel, welcome } = await dialProxy(endpoint, {
        secret: this.options.secret,
        connectTimeoutMs: this.link.connectMs,
        handshakeTimeoutMs: this.link.handshakeMs,
        name: this.options.name,
        pingMs: this.link.pingMs,
      });
      this.linksOpened++;
      // One link found dead: its idle siblings to the same proxy most likely are too; none is handed out.
      channel.onClose((reason) => {
        if ((reason as { code?: string }).code !== 'ELINKDEAD') return;
        this.downUntil.set(proxy, Date.now() + PROXY_DOWN_MS);
        this.dropIdle(proxy, reason);
      });
      this.options.logger.debug({ proxy, proxy_name: welcome.name }, 'proxy connector: link authenticated');
      return { link: { channel, proxy, pipelining: welcome.pipelining === true }, fresh: true };
    } catch (err) {
      if (err instanceof ProxyLinkError) {
        const level = err.stage === 'auth' ? 'error' : 'warn';
        this.options.logger[level]({ proxy, stage: err.stage, reason: err.code }, `proxy connector: ${err.message}`);
        throw new ProxyConnectError(proxy, err.stage, err.message);
      }
      throw err;
    }
  }

  /** Takes a link back after its session ended: kept idle for the next one. */
  release(link: Link): void {
    if (!link.channel.open) return;
    if (this.closed) {
      link.channel.end();
      return;
    }
    let list = this.idle.get(link.proxy);
    if (!list) this.idle.set(link.proxy, (list = []));
    if (list.length >= this.link.maxIdlePerProxy) {
      link.channel.end();
      return;
    }
    link.idleTimer = setTimeout(() => {
      const l = this.idle.get(link.proxy);
      const i = l?.indexOf(link) ?? -1;
      if (l && i >= 0) l.splice(i, 1);
      link.channel.end();
    }, this.link.idleMs);
    link.idleTimer.unref();
    list.push(link);
  }

  private dropIdle(proxy: string, reason: Error): void {
    const list = this.idle.get(proxy);
    if (!list || list.length === 0) return;
    this.idle.delete(proxy);
    this.options.logger.warn({ proxy, links: list.length, err: reason.message }, 'proxy connector: proxy silent; its idle links are dropped');
    for (const link of list) {
      clearTimeout(link.idleTimer);
      link.channel.close(reason);
    }
  }

  /** Idle links per proxy, for tests and metrics. */
  idleLinks(): number {
    let n = 0;
    for (const l of this.idle.values()) n += l.filter((x) => x.channel.open).length;
    return n;
  }

  /** Closes the idle links; sessions in use close their links when done. */
  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) {
      for (const link of list) {
        clearTimeout(link.idleTimer);
        link.channel.end();
      }
    }
    this.idle.clear();
  }
}

function sessionInfo(w: WireSession, proxy: string, source: Source, connectMs: number): SessionInfo {
  return {
    mxHost: w.mx_host,
    mxIp: w.mx_ip,
    port: w.port,
    localIp: w.local_ip ?? source.ip,
    helo: w.helo,
    greeting: w.greeting,
    tls: w.tls,
    via: `proxy:${proxy}`,
    connectMs,
  };
}

/**
 * Transactions a session keeps unanswered ahead of the one being sent before
 * the engine may send another: the one awaiting its final reply, and the one
 * whose envelope the proxy writes right behind that body. One more would only
 * queue at the proxy (and be deferred with the rest if the link broke).
 */
const PIPELINE_AHEAD = 1;

/** An MX session held by a proxy, driven over one link. */
class ProxySession implements OutboundSession {
  usable = true;
  private done = false;
  /** Each transaction sent and not yet answered, oldest first: settles (never rejects) with its answer. */
  private readonly unanswered: Promise<void>[] = [];

  constructor(
    private readonly connector: ProxyConnector,
    private readonly link: Link,
    readonly info: SessionInfo,
    /** True when the proxy handed out an MX session opened earlier (by any MTA). */
    readonly reused: boolean,
    readonly capabilities: string[],
  ) {}

  /**
   * RFC 2920 across transactions, as on the direct path: the proxy takes the
   * next transaction before answering this one, and its MX pipelines, so
   * the next envelope leaves with this body.
   */
  get pipelined(): boolean {
    return this.link.pipelining && this.capabilities.includes('PIPELINING');
  }

  async send(from: string, to: string[], message: Buffer, options: SendOptions = {}): Promise<TransactionResult> {
    if (!this.usable || this.done) throw new Error('session is no longer usable');
    const ahead = this.unanswered.slice();
    if (ahead.length > 0 && !this.pipelined) throw new Error('one transaction at a time');
    const proxy = this.link.proxy;
    let answered!: () => void;
    const settled = new Promise<void>((resolve) => (answered = resolve));
    this.unanswered.push(settled);
    try {
      this.link.channel.send({ t: 'transaction', from, to }, message);
      // Asked for now, so answers are matched in the order the frames left;
      // those ahead are answered first, within their own budgets.
      const next = this.link.channel.next(this.connector.transactionBudget(to.length) * (ahead.length + 1));
      if (options.onBodySent && this.pipelined) {
        // The body is the proxy's from here; the engine's next send() goes
        // once at most PIPELINE_AHEAD transactions before this one remain unanswered.
        const wait = ahead.length > PIPELINE_AHEAD ? ahead[ahead.length - 1 - PIPELINE_AHEAD] : undefined;
        if (wait) void wait.then(options.onBodySent);
        else options.onBodySent();
      }
      const answer = await next;
      const h = answer.header;
      if (h.t === 'result') {
        // Taken only as this transaction's answer: one, in order, per recipient sent.
        const wrong = resultProblem(h.recipients, to);
        if (wrong) throw new ProtocolError(`proxy ${proxy}: a result that does not answer this transaction: ${wrong}`);
        if (h.usable === false) this.usable = false;
        return { recipients: h.recipients as RecipientResult[], envelopeMs: Number(h.envelope_ms) || 0, dataMs: Number(h.data_ms) || 0 };
      }
      this.usable = false;
      // Refused by the proxy itself (stopping, a revoked link): retried soon, as a lost link is, not after delivery.retry.
      if (h.t === 'transaction_failed' && h.proxy_link === true) throw new VolleyError(PROXY_LINK_CODE, `via proxy ${proxy}: ${String(h.message)}`);
      if (h.t === 'transaction_failed') throw new Error(`via proxy ${proxy}: ${String(h.message)}`);
      throw new ProtocolError(`proxy ${proxy}: unexpected answer ${JSON.stringify(h.t).slice(0, 40)} to a transaction`);
    } catch (err) {
      this.usable = false;
      if (!(err instanceof Error && err.message.startsWith('via proxy'))) this.link.channel.close();
      const code = (err as { code?: string }).code;
      throw err instanceof ProtocolError || code === 'ETIMEDOUT' || code === 'ELINKDEAD' ? new VolleyError(PROXY_LINK_CODE, `proxy ${proxy} link lost: ${(err as Error).message}`) : err;
    } finally {
      this.unanswered.splice(this.unanswered.indexOf(settled), 1);
      answered();
    }
  }

  close(): void {
    if (this.done) return;
    this.done = true;
    this.usable = false;
    if (!this.link.channel.open) return;
    if (this.unanswered.length > 0) {
      // Closed mid-transaction: the link's state is unknown, drop it.
      this.link.channel.close();
      return;
    }
    try {
      this.link.channel.send({ t: 'release', reuse: true });
    } catch {
      return;
    }
    this.connector.release(this.link);
  }
}
