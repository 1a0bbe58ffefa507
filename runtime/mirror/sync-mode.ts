// Mode sync, as the daemon sees it: one object the daemon calls at a few
// points (start/stop, each replication scan, the secondary caught up, a
// frame heard from the primary) that owns the rest: the sync socket the MTA
// asks barriers on, the barriers and their sync_timeout policy (block: fail,
// degrade: record peer_outdated durably, write it into the arbiter lease,
// then answer at once), the
// secondary's outdated watch, the barrier latency histogram and the status
// fields. Kept out of daemon.ts so the daemon stays about replication.
import { Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from '../shared/log';
import type { MirrorConfig } from './config';
import type { MirrorState } from './state';
import { OutdatedWatch } from './outdated-watch';
import { SyncBarriers, type SyncState } from './sync-barriers';
import { startSyncServer, type SyncServer } from './sync-server';

export interface SyncModeHost {
  readonly config: MirrorConfig;
  readonly logger: Logger;
  readonly state: MirrorState;
  /** Writes the whole state durably. */
  saveState(s: MirrorState): void;
  /** Starts a replication scan now if the link is up and idle. */
  kick(): void;
  /** Writes the arbiter lease now (it carries peer_outdated from the state); absent without an arbiter. */
  writeLease?(): Promise<void>;
  /** When the primary was last heard from (secondary side). */
  lastContact(): number | undefined;
  now(): number;
}

export interface SyncStatus {
  /** sync: barriers answered by the secondary's acks; blocked: the last one timed out (policy block); degraded: answered alone (policy degrade). */
  sync_state: SyncState;
  sync_policy: MirrorConfig['syncPolicy'];
  sync_timeout_ms: number;
  barriers_waiting: number;
  barriers_answered: number;
  barrier_timeouts: number;
  barrier_last_ms?: number;
  /** This node may lack mail its primary acknowledged (secondary, policy degrade). */
  outdated: boolean;
  /** This primary acknowledged mail its secondary may not hold. */
  peer_outdated: boolean;
}

/** The ping interval a sync link uses: a few per sync_timeout, so silence is noticed within it. */
export function syncPingMs(timeoutMs: number, fallback: number): number {
  return Math.max(100, Math.min(fallback, Math.floor(timeoutMs / 4)));
}

export class SyncMode {
  readonly barriers: SyncBarriers;
  private server?: SyncServer;
  private readonly watch: OutdatedWatch;
  private readonly latency: Histogram;

  constructor(private readonly host: SyncModeHost) {
    const c = host.config;
    this.latency = new Histogram({ name: 'volley_mirror_barrier_seconds', help: 'sync barriers: from the MTA\'s request to the secondary\'s durable ack', buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5], registers: [] });
    this.barriers = new SyncBarriers({
      timeoutMs: c.syncTimeoutMs,
      policy: c.syncPolicy,
      primary: () => host.state.role === 'primary',
      kick: () => host.kick(),
      onDegrade: async (waited) => {
        if (!host.state.peerOutdated) host.saveState({ ...host.state, peerOutdated: true });
        // The arbiter too, before the first answer: until the next renewal (lease_ttl/3) it would still let
        // the outdated secondary take over. Not written: the barriers stay refused (the next timeout tries again).
        try {
          await host.writeLease?.();
        } catch (err) {
          host.logger.error({ err: (err as Error).message }, 'mirror: the secondary missed sync_timeout under policy degrade, but the arbiter lease could not be marked peer_outdated: mail is refused until it can');
          throw err;
        }
        host.logger.error({ waitedMs: waited, syncTimeoutMs: c.syncTimeoutMs }, 'mirror: the secondary did not acknowledge within sync_timeout: policy degrade, mail is acknowledged without it (async) and it is recorded as outdated until it catches up');
      },
      now: () => host.now(),
    });
    this.barriers.onLatency = (ms) => this.latency.observe(ms / 1000);
    // A primary that degraded before a restart is still ahead of its secondary.
    if (host.state.role === 'primary' && host.state.peerOutdated) this.barriers.startDegraded();
    this.watch = new OutdatedWatch({
      timeoutMs: c.syncTimeoutMs,
      applies: () => c.syncPolicy === 'degrade' && host.state.role === 'secondary' && host.state.epoch > 0 && !host.state.outdated,
      lastContact: () => host.lastContact(),
      mark: (silent) => {
        host.saveState({ ...host.state, outdated: true });
        host.logger.error({ silentMs: silent, syncTimeoutMs: c.syncTimeoutMs }, 'mirror: no word from the primary for longer than sync_timeout under policy degrade: this node may lack acknowledged mail and is marked outdated (promotion needs --force until it catches up)');
      },
      now: () => host.now(),
    });
  }

  async start(): Promise<void> {
    this.server = await startSyncServer(this.host.config.syncSocket, () => this.barriers.request(), this.host.logger);
    this.watch.start();
  }

  async stop(): Promise<void> {
    this.watch.stop();
    this.barriers.failAll('the mirror is stopping');
    await this.server?.close();
  }

  /** This node stopped being the primary: nothing it waits for will be acknowledged by it, and its old pair state ends with the role. */
  demoted(): void {
    this.barriers.failAll('this node was demoted to secondary');
    this.barriers.reset();
  }

  /** This node became the primary: its barriers wait for its new secondary (peer_outdated was cleared with the promotion). */
  promoted(): void {
    this.barriers.reset();
  }

  /** The pair is behind what mode sync promises (degraded, or peer_outdated still recorded): a caught-up secondary must be told again. */
  get behind(): boolean {
    return this.barriers.state === 'degraded' || this.host.state.peerOutdated === true;
  }

  /**
   * The primary found its secondary caught up. A degraded pair goes back to
   * sync first; only a later scan that is durable in full proves the
   * secondary holds what was acknowledged alone: true once that is so (the
   * caller then tells the secondary, and peer_outdated is cleared).
   */
  peerCaughtUp(): boolean {
    // A degrade is writing peer_outdated (state, then the lease): clearing it now would leave that degrade answering
    // barriers alone with nothing recording the secondary is behind. The next scan after it looks again.
    if (this.barriers.degrading) return false;
    if (this.barriers.state === 'degraded') {
      this.barriers.caughtUp();
      return false;
    }
    if (this.host.state.peerOutdated) {
      this.host.saveState({ ...this.host.state, peerOutdated: false });
      this.host.logger.info('mirror: the secondary caught up: back in sync, no longer outdated');
    }
    return true;
  }

  /** The secondary was told it holds everything: it is no longer outdated. */
  secondaryCaughtUp(): void {
    if (!this.host.state.outdated) return;
    this.host.saveState({ ...this.host.state, outdated: false });
    this.host.logger.info('mirror: caught up again: no longer outdated');
  }

  status(): SyncStatus {
    const b = this.barriers.stats();
    return {
      sync_state: b.state,
      sync_policy: this.host.config.syncPolicy,
      sync_timeout_ms: this.host.config.syncTimeoutMs,
      barriers_waiting: b.waiting,
      barriers_answered: b.answered,
      barrier_timeouts: b.timeouts,
      ...(b.lastLatencyMs !== undefined ? { barrier_last_ms: b.lastLatencyMs } : {}),
      outdated: this.host.state.outdated === true,
      peer_outdated: this.host.state.peerOutdated === true,
    };
  }

  /** The sync metrics, on the daemon's registry. */
  register(registry: Registry): void {
    registry.registerMetric(this.latency);
    const states: SyncState[] = ['sync', 'blocked', 'degraded'];
    const barriers = this.barriers;
    new Gauge({
      name: 'volley_mirror_sync_state',
      help: 'mode sync: 1 for the state the pair is in (sync; blocked: the secondary missed sync_timeout under policy block; degraded: mail acknowledged without it)',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        for (const s of states) this.set({ state: s }, barriers.state === s ? 1 : 0);
      },
    });
    const host = this.host;
    new Gauge({ name: 'volley_mirror_outdated', help: '1 when this node may lack mail its primary acknowledged (promotion needs --force)', registers: [registry], collect() { this.set(host.state.outdated ? 1 : 0); } });
    new Gauge({ name: 'volley_mirror_peer_outdated', help: '1 when this primary acknowledged mail its secondary may not hold (degraded)', registers: [registry], collect() { this.set(host.state.peerOutdated ? 1 : 0); } });
    new Gauge({ name: 'volley_mirror_barrier_timeouts', help: 'sync barriers the secondary did not acknowledge within sync_timeout since start', registers: [registry], collect() { this.set(barriers.timeouts); } });
  }
}
