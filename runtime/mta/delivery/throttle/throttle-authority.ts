import type { Limits, Throttles } from './throttles';
import type { SmtpReply } from '../../../shared/smtp/reply';

/**
 * Who decides throttles. A worker never decides alone when there are several:
 * the node's primary holds the counts for all its workers (over IPC), as the
 * proxy tier will for a whole cluster, so a limit of 2 connections means 2 per
 * node, not 2 per worker.
 */
export interface ThrottleAuthority {
  pausedFor(key: string): Promise<number>;
  tryConnection(key: string, limits: Limits): Promise<boolean>;
  releaseConnection(key: string): void;
  tryMessage(key: string, limits: Limits): Promise<{ ok: true } | { ok: false; waitMs: number }>;
  onTemporaryFailure(key: string, destination: string, domain: string, reply: SmtpReply): Promise<number>;
}

/** The authority is this process's own Throttles (one worker, or the primary itself). */
export class LocalAuthority implements ThrottleAuthority {
  constructor(private readonly throttles: Throttles) {}
  pausedFor(key: string): Promise<number> {
    return Promise.resolve(this.throttles.pausedFor(key));
  }
  tryConnection(key: string, limits: Limits): Promise<boolean> {
    return Promise.resolve(this.throttles.tryConnection(key, limits));
  }
  releaseConnection(key: string): void {
    this.throttles.releaseConnection(key);
  }
  tryMessage(key: string, limits: Limits): Promise<{ ok: true } | { ok: false; waitMs: number }> {
    return Promise.resolve(this.throttles.tryMessage(key, limits));
  }
  onTemporaryFailure(key: string, destination: string, domain: string, reply: SmtpReply): Promise<number> {
    return Promise.resolve(this.throttles.onTemporaryFailure(key, destination, domain, reply));
  }
}

/** Limits as they cross IPC: JSON has no Infinity, so an unlimited hourly rate is null. */
export interface WireLimits {
  maxConnections: number;
  maxMessagesPerHour: number | null;
}

export type ThrottleOp =
  | { op: 'paused'; key: string }
  | { op: 'connect'; key: string; limits: WireLimits }
  | { op: 'release'; key: string }
  | { op: 'message'; key: string; limits: WireLimits }
  | { op: 'failure'; key: string; destination: string; domain: string; reply: SmtpReply };

/** Answers a worker's throttle question from the primary's Throttles. */
export function answerThrottle(throttles: Throttles, q: ThrottleOp): unknown {
  switch (q.op) {
    case 'paused':
      return throttles.pausedFor(q.key);
    case 'connect':
      return throttles.tryConnection(q.key, revive(q.limits));
    case 'release':
      throttles.releaseConnection(q.key);
      return true;
    case 'message':
      return throttles.tryMessage(q.key, revive(q.limits));
    case 'failure':
      return throttles.onTemporaryFailure(q.key, q.destination, q.domain, q.reply);
  }
}

export function wireLimits(l: Limits): WireLimits {
  return { maxConnections: l.maxConnections, maxMessagesPerHour: Number.isFinite(l.maxMessagesPerHour) ? l.maxMessagesPerHour : null };
}
function revive(l: WireLimits): Limits {
  return { maxConnections: l.maxConnections, maxMessagesPerHour: l.maxMessagesPerHour ?? Infinity };
}

/** A worker's view: every question goes to the primary over the cluster IPC channel. */
export class PrimaryAuthority implements ThrottleAuthority {
  private nextId = 0;
  private readonly pending = new Map<number, (v: unknown) => void>();

  constructor(private readonly send: (m: { type: 'throttle'; id: number; q: ThrottleOp }) => void) {}

  /** Feed replies from the primary here. */
  onReply(id: number, value: unknown): void {
    this.pending.get(id)?.(value);
    this.pending.delete(id);
  }

  private ask<T>(q: ThrottleOp): Promise<T> {
    return new Promise((resolve) => {
      const id = ++this.nextId;
      this.pending.set(id, resolve as (v: unknown) => void);
      this.send({ type: 'throttle', id, q });
    });
  }

  pausedFor(key: string): Promise<number> {
    return this.ask({ op: 'paused', key });
  }
  tryConnection(key: string, limits: Limits): Promise<boolean> {
    return this.ask({ op: 'connect', key, limits: wireLimits(limits) });
  }
  releaseConnection(key: string): void {
    void this.ask({ op: 'release', key });
  }
  tryMessage(key: string, limits: Limits): Promise<{ ok: true } | { ok: false; waitMs: number }> {
    if (!Number.isFinite(limits.maxMessagesPerHour)) return Promise.resolve({ ok: true });
    return this.ask({ op: 'message', key, limits: wireLimits(limits) });
  }
  onTemporaryFailure(key: string, destination: string, domain: string, reply: SmtpReply): Promise<number> {
    return this.ask({ op: 'failure', key, destination, domain, reply });
  }
}
