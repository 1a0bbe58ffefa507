import type { Logger } from '../../../shared/log';
import { dialProxy, endpointName, type FrameChannel, type ProxyEndpoint } from '../../../shared/proxy-protocol';
import type { Acquire, ControlLimits, PermitKind } from '../../../shared/proxy-protocol/control-messages';
import type { SmtpReply } from '../../../shared/smtp/reply';
import type { ThrottleAuthority } from './throttle-authority';
import type { ThrottleKey } from './throttle-key';
import type { Limits } from './throttles';

/**
 * Options of the cluster-wide throttle authority.
 *
 *   proxyFor   the proxy that decides a throttle key, i.e. the proxy
 *              holding the sending IP of the key's source; undefined: the key is not sent through a proxy, and the
 *              fallback decides.
 *   fallback   decides keys with no proxy, and always the backoff pauses.
 *   secret     the proxies' shared secret (>= 32 bytes).
 *   link       dial timeouts, how long to wait for a grant, keep-alive ping
 *              interval (default LINK_PING_MS: a proxy silent for 2 of
 *              them is taken for dead, see heartbeat.ts), reconnect backoff (doubling from minMs, default
 *              500 ms, to maxMs, default CONTROL_BACKOFF_MAX_MS).
 */
export interface ProxyAuthorityOptions {
  proxyFor: (key: ThrottleKey) => ProxyEndpoint | undefined;
  fallback: ThrottleAuthority;
  secret: Buffer;
  name?: string;
  link?: { connectMs?: number; handshakeMs?: number; answerMs?: number; pingMs?: number; backoffMinMs?: number; backoffMaxMs?: number };
  logger?: Logger;
}

type Answer = { ok: boolean; waitMs?: number };
interface Pending {
  kind: PermitKind;
  key: string;
  resolve: (a: Answer) => void;
  timer: NodeJS.Timeout;
}

/** While a proxy cannot be asked, deliveries through it wait at least this long before asking again. */
const NOT_NOW_MIN_MS = 1_000;

/**
 * The longest wait between two dials of a proxy that is away. Its sending
 * IPs deliver nothing until the link is back, so once the proxy listens
 * again (a restart, or a replacement that took minutes) its mail waits up to
 * this long plus one dial. It was 30 s: the mail of a replaced proxy waited
 * up to half a minute after the new one was ready. The cost while a proxy
 * is away: one dial per MTA worker per 5 s (a SYN answered by a reset, or a
 * socket held for connectMs when the address is gone), and one warning.
 */
export const CONTROL_BACKOFF_MAX_MS = 5_000;

/** One persistent control connection to one proxy, re-dialled with backoff whenever it breaks. */
class ControlLink {
  private channel?: FrameChannel;
  private dialing?: Promise<void>;
  private retryAt = 0;
  private retryTimer?: NodeJS.Timeout;
  private backoffMs: number;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();
  /** Connection permits this MTA holds per key (with the limits it took them under), re-claimed after a reconnect. */
  private readonly held = new Map<string, { n: number; limits: ControlLimits }>();
  closed = false;

  constructor(
    readonly endpoint: ProxyEndpoint,
    private readonly options: ProxyAuthorityOptions,
  ) {
    this.backoffMs = options.link?.backoffMinMs ?? 500;
  }

  get up(): boolean {
    return this.channel?.open === true;
  }

  /** How long callers should wait while the link is down. */
  private notNow(): Answer {
    return { ok: false, waitMs: Math.max(NOT_NOW_MIN_MS, this.retryAt - Date.now()) };
  }

  async acquire(kind: PermitKind, key: string, limits: ControlLimits): Promise<Answer> {
    if (!this.up) await this.connect();
    const channel = this.channel;
    if (!channel?.open) return this.notNow();
    const id = ++this.nextId;
    const answer = await new Promise<Answer>((resolve) => {
      const timer = setTimeout(() => {
        // The grant may still come: onGrant gives back a late connection permit.
        this.pending.delete(id);
        this.lateIds.set(id, key);
        resolve(this.notNow());
      }, this.options.link?.answerMs ?? 10_000);
      this.pending.set(id, { kind, key, resolve, timer });
      const frame: Acquire = { t: 'acquire', id, kind, key, limits };
      try {
        channel.send(frame);
      } catch {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(this.notNow());
      }
    });
    if (answer.ok && kind === 'connection') {
      const h = this.held.get(key);
      if (h) {
        h.n++;
        h.limits = limits;
      } else this.held.set(key, { n: 1, limits });
    }
    return answer;
  }

  private readonly lateIds = new Map<number, string>();

  release(key: string): void {
    const h = this.held.get(key);
    if (!h) return;
    if (--h.n === 0) this.held.delete(key);
    // Down: the proxy forgot our permits when the connection broke; nothing to give back.
    if (this.up) this.channel!.send({ t: 'release', key });
  }

  /** Dials now unless a dial is under way (then joins it) or the backoff says not yet. */
  private connect(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.dialing) return this.dialing;
    if (Date.now() < this.retryAt) return Promise.resolve();
    this.dialing = this.dial().finally(() => {
      this.dialing = undefined;
    });
    return this.dialing;
  }

  private async dial(): Promise<void> {
    const log = this.options.logger;
    let channel: FrameChannel;
    try {
      ({ channel } = await dialProxy(this.endpoint, {
        secret: this.options.secret,
        connectTimeoutMs: this.options.link?.connectMs ?? 5_000,
        handshakeTimeoutMs: this.options.link?.handshakeMs ?? 5_000,
        name: this.options.name,
        channel: 'control',
        // dialProxy watches the link: a proxy silent for 2 pings is closed (onClose fails the pending asks and redials).
        pingMs: this.options.link?.pingMs,
      }));
    } catch (err) {
      log?.warn({ proxy: endpointName(this.endpoint), retry_ms: this.backoffMs }, `throttles: control channel to proxy failed: ${(err as Error).message}`);
      this.scheduleRetry();
      return;
    }
    if (this.closed) {
      channel.close();
      return;
    }
    this.channel = channel;
    this.backoffMs = this.options.link?.backoffMinMs ?? 500;
    this.retryAt = 0;
    channel.onUnsolicited = (f) => {
      if (f.header.t === 'grant') this.onGrant(f.header as unknown as { id: number; ok: boolean; wait_ms?: number });
      else if (f.header.t !== 'pong') channel.close(new Error(`unexpected ${String(f.header.t).slice(0, 40)} on the control channel`));
      return true;
    };
    channel.onClose((reason) => this.onClose(channel, reason));
    // Re-establish our state: the permits we still hold, under the limits we took them with.
    for (const [key, h] of this.held) {
      for (let i = 0; i < h.n; i++) channel.send({ t: 'acquire', id: ++this.nextId, kind: 'connection', key, limits: h.limits, reclaim: true } satisfies Acquire);
    }
    log?.info({ proxy: endpointName(this.endpoint), reclaimed: [...this.held.values()].reduce((a, h) => a + h.n, 0) }, 'throttles: control channel to proxy up');
  }

  private onGrant(g: { id: number; ok: boolean; wait_ms?: number }): void {
    const p = this.pending.get(g.id);
    if (p) {
      this.pending.delete(g.id);
      clearTimeout(p.timer);
      p.resolve({ ok: g.ok === true, waitMs: typeof g.wait_ms === 'number' ? g.wait_ms : undefined });
      return;
    }
    const lateKey = this.lateIds.get(g.id);
    if (lateKey !== undefined) {
      this.lateIds.delete(g.id);
      // We answered "not now" already: a connection permit granted late goes straight back.
      if (g.ok && this.up) this.channel!.send({ t: 'release', key: lateKey });
    }
    // Otherwise a reclaim's grant: nothing waits for it.
  }

  private onClose(channel: FrameChannel, reason: Error): void {
    if (this.channel !== channel) return;
    this.channel = undefined;
    this.lateIds.clear();
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.resolve({ ok: false, waitMs: NOT_NOW_MIN_MS });
    }
    if (this.closed) return;
    this.options.logger?.warn({ proxy: endpointName(this.endpoint), err: reason.message }, 'throttles: control channel to proxy lost; reconnecting');
    // Reconnect at once the first time; a failure then backs off.
    void this.connect();
  }

  private scheduleRetry(): void {
    this.retryAt = Date.now() + this.backoffMs;
    const max = this.options.link?.backoffMaxMs ?? CONTROL_BACKOFF_MAX_MS;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(max, this.backoffMs * 2);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    // Keep the connection persistent: retry by itself, not only when a delivery asks.
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      // The wait is over. A timer may fire a millisecond before Date.now()
      // reaches retryAt; connect() would then not dial, and nothing would
      // retry until a delivery asked.
      this.retryAt = 0;
      void this.connect();
    }, delay);
    this.retryTimer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.channel?.close();
    this.channel = undefined;
  }
}

function wire(l: Limits): ControlLimits {
  return { max_connections: l.maxConnections, max_messages_per_hour: Number.isFinite(l.maxMessagesPerHour) ? l.maxMessagesPerHour : null };
}

/**
 * Cluster-wide throttles: connection and message permits for keys whose
 * sending IP a proxy holds are decided by that proxy, for all MTAs at once,
 * over one persistent control connection per proxy. While a proxy cannot be
 * reached (broken connection, restart) its keys answer "not now", so those
 * deliveries wait in their queues; nothing is lost, and the connection is
 * re-dialled with backoff, re-claiming the permits this MTA still holds.
 *
 * Backoff pauses (`pausedFor`, `onTemporaryFailure`) stay with the fallback
 * authority, i.e. node-local: a 4xx seen by this MTA pauses this node, not
 * the cluster. Keys with no proxy are decided entirely by the fallback.
 */
export class ProxyAuthority implements ThrottleAuthority {
  private readonly links = new Map<string, ControlLink>();

  constructor(private readonly options: ProxyAuthorityOptions) {}

  private linkFor(key: ThrottleKey): ControlLink | undefined {
    const endpoint = this.options.proxyFor(key);
    if (!endpoint) return undefined;
    const name = `${endpoint.host}:${endpoint.port}`;
    let link = this.links.get(name);
    if (!link) this.links.set(name, (link = new ControlLink(endpoint, this.options)));
    return link;
  }

  /** Whether the control connection to the proxy deciding `key` is up (undefined: no proxy decides it). */
  connected(key: ThrottleKey): boolean | undefined {
    return this.linkFor(key)?.up;
  }

  pausedFor(key: ThrottleKey): Promise<number> {
    return this.options.fallback.pausedFor(key);
  }

  async tryConnection(key: ThrottleKey, limits: Limits): Promise<boolean> {
    const link = this.linkFor(key);
    if (!link) return this.options.fallback.tryConnection(key, limits);
    return (await link.acquire('connection', key.id, wire(limits))).ok;
  }

  releaseConnection(key: ThrottleKey): void {
    const link = this.linkFor(key);
    if (!link) this.options.fallback.releaseConnection(key);
    else link.release(key.id);
  }

  async tryMessage(key: ThrottleKey, limits: Limits): Promise<{ ok: true } | { ok: false; waitMs: number }> {
    const link = this.linkFor(key);
    if (!link) return this.options.fallback.tryMessage(key, limits);
    // No hourly cap here: nothing to count (the connection permit still gates delivery).
    if (!Number.isFinite(limits.maxMessagesPerHour)) return { ok: true };
    const a = await link.acquire('message', key.id, wire(limits));
    return a.ok ? { ok: true } : { ok: false, waitMs: a.waitMs ?? NOT_NOW_MIN_MS };
  }

  onTemporaryFailure(key: ThrottleKey, domain: string, reply: SmtpReply): Promise<number> {
    return this.options.fallback.onTemporaryFailure(key, domain, reply);
  }

  /** Closes every control connection (the proxies forget this MTA's permits). */
  close(): void {
    for (const l of this.links.values()) l.close();
    this.links.clear();
  }
}
