// The backends of one listener, their health (HAProxy-like fall/rise) and the
// least-connections choice; and the health checker that probes them.
import { endSocket } from '../shared/end-socket';
import type { Logger } from '../shared/log';
import { connectBackend, type BackendFailure } from './backend-connect';
import { formatHostPort, type HealthOptions, type HostPort, type ListenerMode } from './options';

export interface BackendEvents {
  /** A backend went up or down. */
  onStateChange?(backend: Backend, up: boolean): void;
  onFailure?(backend: Backend, reason: BackendFailure): void;
  onCheck?(backend: Backend, ok: boolean): void;
}

/**
 * Where a worker's pool sends what real traffic saw: the node's one health
 * state lives in the lb's primary (runtime/lb/primary.ts), which runs the
 * checks, counts fall and rise, and tells every worker when a backend goes
 * up or down.
 */
export interface HealthAuthority {
  failure(listener: string, backend: string, reason: BackendFailure, detail: string): void;
  refusal(listener: string, backend: string, detail: string): void;
  /** A session served after failures were reported: the consecutive count starts again. */
  success(listener: string, backend: string): void;
}

export class Backend {
  readonly id: string;
  up = true;
  /** A failure was sent to the HealthAuthority and no success since (so a success is sent once, not per message). */
  reported = false;
  /** Sessions proxied to it now, and connection attempts under way. */
  active = 0;
  /** Sessions it has served. */
  served = 0;
  failures = 0;
  consecutiveFailures = 0;
  consecutiveSuccesses = 0;
  lastCheck?: { at: string; ok: boolean; detail?: string };
  lastFailure?: { at: string; reason: BackendFailure; detail: string };
  /** Order of creation, to break ties in the least-connections choice. */
  constructor(
    readonly listener: string,
    readonly address: HostPort,
    readonly index: number,
  ) {
    this.id = formatHostPort(address);
  }
}

export class BackendPool {
  backends: Backend[];
  /** Rotates among equally loaded backends so ties do not all land on the first. */
  private turn = 0;

  constructor(
    readonly listener: string,
    addresses: HostPort[],
    /** fall and rise; replaced by a reload. */
    public health: HealthOptions,
    private readonly events: BackendEvents,
    private readonly logger: Logger,
    /** Set in an lb worker: health is the primary's to decide, this pool only reports. */
    private readonly authority?: HealthAuthority,
  ) {
    this.backends = addresses.map((a, i) => new Backend(listener, a, i));
  }

  /**
   * A reload's backend list: backends still listed keep their state and
   * counters (sessions in flight hold their Backend), new ones start up.
   */
  setBackends(addresses: HostPort[]): void {
    const old = new Map(this.backends.map((b) => [b.id, b]));
    this.backends = addresses.map((a, i) => old.get(formatHostPort(a)) ?? new Backend(this.listener, a, i));
  }

  byId(id: string): Backend | undefined {
    return this.backends.find((b) => b.id === id);
  }

  /** The primary's word on a backend (a worker's pool). */
  setUp(id: string, up: boolean): void {
    const b = this.byId(id);
    if (b) b.up = up;
  }

  /**
   * The next backend to try: among the healthy ones not tried yet, the least
   * loaded; when none is left, a down one not tried yet (its state may be
   * stale, and a client should get a 421 only when every backend failed).
   */
  pick(tried: ReadonlySet<Backend>): Backend | undefined {
    const n = this.backends.length;
    const start = this.turn++ % n;
    let best: Backend | undefined;
    for (const wantUp of [true, false]) {
      for (let k = 0; k < n; k++) {
        const b = this.backends[(start + k) % n];
        if (b.up !== wantUp || tried.has(b)) continue;
        if (!best || b.active < best.active) best = b;
      }
      if (best) return best;
    }
    return undefined;
  }

  healthyCount(): number {
    return this.backends.filter((b) => b.up).length;
  }

  /** A failed check or a failure on real traffic. */
  reportFailure(b: Backend, reason: BackendFailure, detail: string): void {
    if (reason === 'aborted') return;
    if (this.authority) {
      b.failures++;
      b.lastFailure = { at: new Date().toISOString(), reason, detail };
      b.reported = true;
      this.authority.failure(this.listener, b.id, reason, detail);
      return;
    }
    b.failures++;
    b.consecutiveFailures++;
    b.consecutiveSuccesses = 0;
    b.lastFailure = { at: new Date().toISOString(), reason, detail };
    this.events.onFailure?.(b, reason);
    if (b.up && b.consecutiveFailures >= this.health.fall) {
      b.up = false;
      this.logger.warn({ listener: this.listener, backend: b.id, reason, detail, fall: this.health.fall }, 'backend down');
      this.events.onStateChange?.(b, false);
    }
  }

  /**
   * A backend that answered a client's connection with a refusal (a whole
   * 4xx/5xx greeting reply): recorded, but not counted towards fall. The MTA is alive and
   * may be refusing this client only (its per-client limit); whether it
   * refuses everyone is what its health checks, never limited per client, say.
   */
  reportRefusal(b: Backend, detail: string): void {
    b.failures++;
    b.lastFailure = { at: new Date().toISOString(), reason: 'bad_greeting', detail };
    if (this.authority) return this.authority.refusal(this.listener, b.id, detail);
    this.events.onFailure?.(b, 'bad_greeting');
  }

  /** A passed check (fromCheck) or a served session; only checks bring a down backend back. */
  reportSuccess(b: Backend, fromCheck: boolean): void {
    if (this.authority) {
      if (b.reported) {
        b.reported = false;
        this.authority.success(this.listener, b.id);
      }
      return;
    }
    if (b.up) {
      b.consecutiveFailures = 0;
      return;
    }
    if (!fromCheck) return;
    b.consecutiveSuccesses++;
    if (b.consecutiveSuccesses >= this.health.rise) {
      b.up = true;
      b.consecutiveFailures = 0;
      b.consecutiveSuccesses = 0;
      this.logger.info({ listener: this.listener, backend: b.id, rise: this.health.rise }, 'backend up');
      this.events.onStateChange?.(b, true);
    }
  }
}

/**
 * Probes every backend of a pool every interval: connect, read the 220, send
 * QUIT (SMTP); connect (TCP). One probe per backend at a time.
 */
export class HealthChecker {
  private timer?: NodeJS.Timeout;
  private readonly running = new Set<Backend>();
  private readonly abort = new AbortController();

  constructor(
    private readonly pool: BackendPool,
    private readonly mode: ListenerMode,
    private readonly health: HealthOptions,
    private readonly proxyProtocol: boolean,
    private readonly events: BackendEvents,
    /** Where checks connect from: the same address as sessions, so the MTA sees them as the lb's own. */
    private readonly sourceAddress?: string,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.round(), this.health.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.abort.abort();
  }

  /** One round now (also what the interval runs). */
  round(): void {
    for (const b of this.pool.backends) if (!this.running.has(b)) void this.check(b);
  }

  private async check(b: Backend): Promise<void> {
    this.running.add(b);
    try {
      const r = await connectBackend({
        backend: b.address,
        mode: this.mode,
        connectTimeoutMs: this.health.timeoutMs,
        greetingTimeoutMs: this.health.timeoutMs,
        localAddress: this.sourceAddress,
        // The MTA expects a header from us; UNKNOWN says "a check, no client behind it".
        proxyHeader: this.proxyProtocol ? 'PROXY UNKNOWN\r\n' : undefined,
        signal: this.abort.signal,
      });
      if (this.abort.signal.aborted) {
        if (r.ok) r.socket.destroy();
        return;
      }
      b.lastCheck = { at: new Date().toISOString(), ok: r.ok, detail: r.ok ? undefined : `${r.reason}: ${r.detail}` };
      this.events.onCheck?.(b, r.ok);
      if (r.ok) {
        const s = r.socket;
        s.on('error', () => undefined);
        if (this.mode === 'smtp') {
          // The 221 is not awaited; a backend that does not close is closed for it.
          endSocket(s, 1000, 'QUIT\r\n');
          s.resume();
        } else {
          s.destroy();
        }
        this.pool.reportSuccess(b, true);
      } else {
        this.pool.reportFailure(b, r.reason, r.detail);
      }
    } finally {
      this.running.delete(b);
    }
  }
}
