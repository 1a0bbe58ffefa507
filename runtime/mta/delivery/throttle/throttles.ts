import type { BackoffRule, RollupConfig, ThrottleRule } from '../../../shared/config/types';
import type { SmtpReply } from '../../../shared/smtp/reply';
import { HourWindow } from '../../../shared/throttle/hour-window';

export interface Limits {
  maxConnections: number;
  maxMessagesPerHour: number;
}

/** With no rule, a destination gets this many connections per sending IP and no hourly cap. */
export const DEFAULT_LIMITS: Limits = { maxConnections: 20, maxMessagesPerHour: Infinity };

interface KeyState {
  connections: number;
  sent: HourWindow;
  pausedUntil: number;
}

/**
 * Throttles per (sending IP or VMTA, destination), where the destination is a
 * domain or an MX rollup (all of Google). This is the node-local authority;
 * the proxy tier takes the same decisions cluster-wide. A message held by a
 * throttle is waiting, not failing: callers put it back in its queue.
 */
export class Throttles {
  private rules: ThrottleRule[] = [];
  private backoff: (BackoffRule & { re?: RegExp })[] = [];
  private rollups: RollupConfig[] = [];
  private readonly state = new Map<string, KeyState>();

  constructor(
    config: { throttles: ThrottleRule[]; backoff: BackoffRule[]; rollups: RollupConfig[] },
    private readonly now: () => number = Date.now,
  ) {
    this.apply(config);
  }

  apply(config: { throttles: ThrottleRule[]; backoff: BackoffRule[]; rollups: RollupConfig[] }): void {
    this.rules = config.throttles;
    this.backoff = config.backoff.map((b) => ({ ...b, re: b.text ? new RegExp(b.text, 'i') : undefined }));
    this.rollups = config.rollups;
  }

  /** The rollup a domain belongs to by its MX hosts, or the domain itself. */
  destinationOf(domain: string, mxHosts: string[]): string {
    for (const r of this.rollups) {
      for (const host of mxHosts) {
        const h = host.toLowerCase().replace(/\.$/, '');
        if (r.mx.some((suffix) => h === suffix || h.endsWith(`.${suffix}`))) return r.name;
      }
    }
    return domain;
  }

  /**
   * `share` < 1 when this node enforces only its part of a cluster limit
   * (HAProxy mode: each of N MTAs takes 1/N, never less than one connection).
   */
  limitsFor(vmta: string | undefined, destination: string, domain: string, share = 1): Limits {
    const rule = this.rules.find((r) => (r.vmta === undefined || r.vmta === vmta) && (r.destination === destination || r.destination === domain))
      ?? this.rules.find((r) => (r.vmta === undefined || r.vmta === vmta) && r.destination === '*');
    const maxConnections = rule?.maxConnections ?? DEFAULT_LIMITS.maxConnections;
    const maxMessagesPerHour = rule?.maxMessagesPerHour ?? DEFAULT_LIMITS.maxMessagesPerHour;
    if (share >= 1) return { maxConnections, maxMessagesPerHour };
    return { maxConnections: Math.max(1, Math.floor(maxConnections * share)), maxMessagesPerHour: Math.max(1, Math.floor(maxMessagesPerHour * share)) };
  }

  /** How long the key is paused by a backoff rule (0: not paused). */
  pausedFor(key: string): number {
    const s = this.state.get(key);
    return s ? Math.max(0, s.pausedUntil - this.now()) : 0;
  }

  tryConnection(key: string, limits: Limits): boolean {
    const s = this.get(key);
    if (s.connections >= limits.maxConnections) return false;
    s.connections++;
    return true;
  }

  releaseConnection(key: string): void {
    const s = this.state.get(key);
    if (s && s.connections > 0) s.connections--;
  }

  /** Takes a message permit; otherwise says how long until one frees up. */
  tryMessage(key: string, limits: Limits): { ok: true } | { ok: false; waitMs: number } {
    if (limits.maxMessagesPerHour === Infinity) return { ok: true };
    return this.get(key).sent.take(limits.maxMessagesPerHour);
  }

  /**
   * Counts up to `want` message permits at once for a worker's lease: how
   * many (0 when the hour's limit is reached), the minute they were counted
   * in (where unspent ones go back), and how long until the window frees one.
   */
  leaseMessages(key: string, limits: Limits, want: number, share = 1): { n: number; minute: number; waitMs: number } {
    const sent = this.get(key).sent;
    const max = limits.maxMessagesPerHour;
    // At most `share` of what the hour has left (at least one), so one worker's lease never leaves the others nothing.
    const n = max === Infinity ? want : sent.takeUpTo(max, Math.min(want, Math.max(1, Math.floor((max - sent.used) * share))));
    return { n, minute: HourWindow.minuteOf(this.now()), waitMs: n > 0 ? 0 : sent.waitMs };
  }

  /** Unspent permits of a lease come back: they no longer count against the hour. */
  returnMessages(key: string, n: number, minute: number): void {
    this.state.get(key)?.sent.giveBack(n, minute);
  }

  /** Applies the first backoff rule that matches a temporary failure; returns the pause, if any. */
  onTemporaryFailure(key: string, destination: string, domain: string, reply: SmtpReply): number {
    if (reply.code < 400 || reply.code >= 500) return 0;
    const rule = this.backoff.find(
      (b) =>
        (b.destination === undefined || b.destination === '*' || b.destination === destination || b.destination === domain) &&
        (b.code === undefined || b.code === reply.code) &&
        (b.re === undefined || b.re.test(reply.text)),
    );
    if (!rule) return 0;
    const s = this.get(key);
    s.pausedUntil = Math.max(s.pausedUntil, this.now() + rule.pauseMs);
    return rule.pauseMs;
  }

  private get(key: string): KeyState {
    let s = this.state.get(key);
    if (!s) {
      s = { connections: 0, sent: new HourWindow(this.now), pausedUntil: 0 };
      this.state.set(key, s);
    }
    return s;
  }
}
