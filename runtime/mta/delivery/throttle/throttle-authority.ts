import type { Limits, Throttles } from './throttles';
import type { SmtpReply } from '../../../shared/smtp/reply';
import type { LeaseGrant } from './lease-book';
import { MessageLeases } from './message-leases';
import type { ThrottleKey } from './throttle-key';

/**
 * Who decides throttles. A worker never decides alone when there are several:
 * the node's primary holds the counts for all its workers (over IPC), as the
 * proxy tier will for a whole cluster, so a limit of 2 connections means 2 per
 * node, not 2 per worker.
 */
export interface ThrottleAuthority {
  pausedFor(key: ThrottleKey): Promise<number>;
  tryConnection(key: ThrottleKey, limits: Limits): Promise<boolean>;
  releaseConnection(key: ThrottleKey): void;
  tryMessage(key: ThrottleKey, limits: Limits): Promise<{ ok: true } | { ok: false; waitMs: number }>;
  onTemporaryFailure(key: ThrottleKey, domain: string, reply: SmtpReply): Promise<number>;
}

/** The authority is this process's own Throttles (one worker, or the primary itself). */
export class LocalAuthority implements ThrottleAuthority {
  constructor(private readonly throttles: Throttles) {}
  pausedFor(key: ThrottleKey): Promise<number> {
    return Promise.resolve(this.throttles.pausedFor(key.id));
  }
  tryConnection(key: ThrottleKey, limits: Limits): Promise<boolean> {
    return Promise.resolve(this.throttles.tryConnection(key.id, limits));
  }
  releaseConnection(key: ThrottleKey): void {
    this.throttles.releaseConnection(key.id);
  }
  tryMessage(key: ThrottleKey, limits: Limits): Promise<{ ok: true } | { ok: false; waitMs: number }> {
    return Promise.resolve(this.throttles.tryMessage(key.id, limits));
  }
  onTemporaryFailure(key: ThrottleKey, domain: string, reply: SmtpReply): Promise<number> {
    return Promise.resolve(this.throttles.onTemporaryFailure(key.id, key.destination, domain, reply));
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
  | { op: 'failure'; key: string; destination: string; domain: string; reply: SmtpReply }
  /** A block of message permits (answered by the primary's LeaseBook, not here). */
  | { op: 'lease'; key: string; limits: WireLimits; want: number }
  /** The unspent part of a lease comes back; no answer. */
  | { op: 'return'; key: string; lease: number; unspent: number };

/** The ops the primary answers with a throttle-reply; the others are told, not asked. */
export type AskedOp = Exclude<ThrottleOp, { op: 'release' | 'return' | 'lease' }>;

/** Answers a worker's throttle question from the primary's Throttles. */
export function answerThrottle(throttles: Throttles, q: AskedOp): unknown {
  switch (q.op) {
    case 'paused':
      return throttles.pausedFor(q.key);
    case 'connect':
      return throttles.tryConnection(q.key, revive(q.limits));
    case 'failure':
      return throttles.onTemporaryFailure(q.key, q.destination, q.domain, q.reply);
  }
}

export function wireLimits(l: Limits): WireLimits {
  return { maxConnections: l.maxConnections, maxMessagesPerHour: Number.isFinite(l.maxMessagesPerHour) ? l.maxMessagesPerHour : null };
}
export function revive(l: WireLimits): Limits {
  return { maxConnections: l.maxConnections, maxMessagesPerHour: l.maxMessagesPerHour ?? Infinity };
}

export interface PrimaryAuthorityOptions {
  sent?: (op: ThrottleOp['op']) => void;
  now?: () => number;
  block?: number;
}

/** A worker's IPC channel to its primary, as the worker process is one. */
export interface IpcChannel {
  send?: (m: { type: 'throttle'; id: number; q: ThrottleOp }) => unknown;
  on(event: 'disconnect', listener: () => void): unknown;
}

/** How long a stopping worker's refused block of message permits says to wait (its connection ends at once). */
const CLOSED_LEASE_WAIT_MS = 1_000;

/** The answer to an ask the primary can no longer answer: nothing more is sent. */
function unanswered(op: ThrottleOp['op']): unknown {
  switch (op) {
    case 'connect':
      return false;
    case 'lease':
      return { lease: 0, n: 0, waitMs: CLOSED_LEASE_WAIT_MS } satisfies LeaseGrant;
    default:
      return 0; // 'paused', 'failure': no pause
  }
}

/**
 * A worker's view: connection permits, pauses and failures are asked of the
 * primary (a round trip each: connections are rare next to messages);
 * message permits come from blocks the primary leases (message-leases.ts),
 * so a rate-limited destination costs one round trip per block, not per
 * message. Releases and returns are told, never answered.
 */
export class PrimaryAuthority implements ThrottleAuthority {
  private nextId = 0;
  private readonly pending = new Map<number, { op: ThrottleOp['op']; resolve: (v: unknown) => void }>();
  /** The channel to the primary closed: nothing more is sent, every ask is answered here. */
  private closed = false;
  readonly leases: MessageLeases;

  /**
   * An authority over a worker's IPC channel to its primary (the worker
   * process itself): sends there, and answers every waiting ask when the
   * channel closes (the primary went away), since no reply can come any more
   * and a stopping engine waits for the transactions that wait for them.
   */
  static overChannel(channel: IpcChannel, options: PrimaryAuthorityOptions = {}): PrimaryAuthority {
    const authority = new PrimaryAuthority((m) => channel.send?.(m), options);
    channel.on('disconnect', () => authority.disconnected());
    return authority;
  }

  /** `sent` counts every throttle message to the primary (the worker's /metrics). */
  constructor(
    private readonly send: (m: { type: 'throttle'; id: number; q: ThrottleOp }) => void,
    options: PrimaryAuthorityOptions = {},
  ) {
    this.sent = options.sent ?? (() => undefined);
    this.leases = new MessageLeases(
      {
        lease: (key, limits, want) => this.ask<LeaseGrant>({ op: 'lease', key, limits: wireLimits(limits), want }),
        giveBack: (key, lease, unspent) => this.tell({ op: 'return', key, lease, unspent }),
      },
      options.now,
      options.block,
    );
  }

  private readonly sent: (op: ThrottleOp['op']) => void;

  /** Feed replies from the primary here. */
  onReply(id: number, value: unknown): void {
    this.pending.get(id)?.resolve(value);
    this.pending.delete(id);
  }

  /**
   * The channel to the primary closed. Every waiting ask gets the answer that
   * sends nothing more (no pause, no connection, no permits) and so do the
   * asks after it: a deferral waiting for its backoff pause is recorded, and
   * a stopping engine's in-flight work ends instead of waiting forever.
   */
  disconnected(): void {
    this.closed = true;
    for (const [id, ask] of [...this.pending]) {
      this.pending.delete(id);
      ask.resolve(unanswered(ask.op));
    }
  }

  /** The primary recalls this worker's unspent permits for a key. */
  onRecall(key: string): void {
    this.leases.recall(key);
  }

  private ask<T>(q: ThrottleOp): Promise<T> {
    if (this.closed) return Promise.resolve(unanswered(q.op) as T);
    return new Promise((resolve) => {
      const id = ++this.nextId;
      this.pending.set(id, { op: q.op, resolve: resolve as (v: unknown) => void });
      this.sent(q.op);
      this.send({ type: 'throttle', id, q });
    });
  }

  private tell(q: ThrottleOp): void {
    if (this.closed) return; // a send on a closed channel only emits an error
    this.sent(q.op);
    this.send({ type: 'throttle', id: 0, q });
  }

  /** Pause questions in flight per key: asked together, answered once. */
  private readonly pausing = new Map<string, Promise<number>>();
  /** The connection ask in flight per key: the next waits for its answer. */
  private readonly connecting = new Map<string, Promise<boolean>>();

  /**
   * A delivery pump starts many connection attempts to a destination at once
   * (as many as it has mail for): they share one question.
   */
  pausedFor(key: ThrottleKey): Promise<number> {
    let ask = this.pausing.get(key.id);
    if (!ask) {
      ask = this.ask<number>({ op: 'paused', key: key.id }).finally(() => this.pausing.delete(key.id));
      this.pausing.set(key.id, ask);
    }
    return ask;
  }

  /**
   * One connection ask per key at a time; a refusal answers every attempt
   * waiting behind it. Without this, a destination at its node-wide limit
   * cost one round trip per queued attempt each time the pump ran (measured:
   * ~5 asks a delivered message at a limit of 20 connections, 2 workers).
   */
  async tryConnection(key: ThrottleKey, limits: Limits): Promise<boolean> {
    for (let ahead = this.connecting.get(key.id); ahead; ahead = this.connecting.get(key.id)) {
      if (!(await ahead)) return false;
    }
    const ask = this.ask<boolean>({ op: 'connect', key: key.id, limits: wireLimits(limits) }).finally(() => this.connecting.delete(key.id));
    this.connecting.set(key.id, ask);
    return ask;
  }
  releaseConnection(key: ThrottleKey): void {
    this.tell({ op: 'release', key: key.id });
  }
  tryMessage(key: ThrottleKey, limits: Limits): Promise<{ ok: true } | { ok: false; waitMs: number }> {
    return this.leases.take(key.id, limits);
  }
  onTemporaryFailure(key: ThrottleKey, domain: string, reply: SmtpReply): Promise<number> {
    return this.ask({ op: 'failure', key: key.id, destination: key.destination, domain, reply });
  }
}
