// `volley mirror`: one per node of an HA pair. Both nodes listen; the node
// whose durable state says primary dials its peer and replicates its
// persistent path over the proxy protocol's TLS + HMAC link (channel
// "mirror"), the other receives and writes the same bytes at the same
// offsets. Every frame carries the sender's epoch: a frame with a higher
// epoch than this node's makes it a secondary at once, and a primary that
// is demoted fences its MTA (mta-fence.ts: intake stopped over the MTA's
// admin API, then SIGTERM to the pid holding the persistent path's lock).
// With an arbiter, lease.ts keeps the lease (automatic failover) and
// switchover.ts hands the primary role over without loss.
import { readFileSync } from 'node:fs';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Logger } from '../shared/log';
import { VolleyError, errorCode } from '../shared/errors';
import { listen } from '../shared/listen';
import {
  FrameChannel,
  LINK_PING_MS,
  MIN_PING_MS,
  PROXY_SIDE_MISSES,
  dialProxy,
  keepAlive,
  loadSecret,
  serverHandshake,
  type Frame,
} from '../shared/proxy-protocol';
import { applyBatch, parseOps } from './apply';
import type { Arbiter, Lease } from './arbiter';
import { openArbiter } from './arbiters';
import type { MirrorConfig } from './config';
import { MIRROR_SECRET_ENV } from './config';
import { inventory, type Inventory } from './files';
import { LeaseKeeper, type LeaseStatus } from './lease';
import { fenceMta, liveMtaPid, lockPid } from './mta-fence';
import { runPromoteCommand } from './promote-command';
import { runSwitchover, type SwitchoverResult } from './switchover';
import { fileOnPromotion, guardCatchUp, markForQuarantine, quarantineSummary, type QuarantineSummary } from './quarantine';
import { InFlight } from './in-flight';
import { ScanPace, SYNC_SCAN_GAP_MS, pause } from './scan-pace';
import { LagReport, lagOf } from './lag-report';
import { receiveLoopsDone } from './receive-loops';
import { Sender } from './sender';
import { readState, writeState, type MirrorState } from './state';
import { SyncMode, syncPingMs, type SyncStatus } from './sync-mode';

export interface MirrorStatus {
  name: string;
  role: MirrorState['role'];
  epoch: number;
  mode: MirrorConfig['mode'];
  peer: string;
  peer_connected: boolean;
  caught_up: boolean;
  lag_bytes: number;
  lag_seconds: number;
  last_contact?: string;
  /** The primary's files as they were at this time are all durable on the secondary (primary only). */
  durable_through?: string;
  full_resyncs: number;
  /** Files too large for one frame of the link: not replicated (primary only; each is logged, by path). */
  refused_files: number;
  bytes_sent: number;
  bytes_received: number;
  batches: number;
  demotions: number;
  /** The arbiter lease as this node last saw it (automatic failover configured). */
  lease?: LeaseStatus;
  /** waiting: why it has not run yet (the old link's receive loops still writing). */
  promote_command?: { epoch: number; exit?: number | null; error?: string; waiting?: string };
  /** Bytes set aside from this node's own history (a returning primary's unreplicated tail), and whether a catch-up still has to file them. */
  quarantine: QuarantineSummary;
  /** Mode sync only: the barriers' state and the outdated flags. */
  sync?: SyncStatus;
}

/** A frame's epoch; a frame without one is a protocol error on this channel. */
function epochOf(f: Frame): number {
  const e = f.header.epoch;
  if (!Number.isSafeInteger(e) || (e as number) < 0) throw new VolleyError('EMIRRORPROTO', `frame ${f.header.t} without an epoch`);
  return e as number;
}

export class MirrorDaemon {
  state: MirrorState;
  private server?: Server;
  private readonly secret: Buffer;
  private inbound?: FrameChannel;
  private outbound?: FrameChannel;
  private sender?: Sender;
  private dialing = false;
  private stopped = false;
  private lastContact?: number;
  /** The lag the primary last reported (what a secondary shows in its status). */
  private peerLag = { bytes: 0, seconds: 0 };
  private bytesReceived = 0;
  private batches = 0;
  private demotions = 0;
  private quarantine: QuarantineSummary = { pending: false, reports: [], messages: 0 };
  private wake?: () => void;
  /** The secondary's receive loops still running (an old link's may outlive its replacement): a promotion files the quarantine only after all stopped writing. */
  private readonly receiving = new Set<Promise<void>>();
  private readonly sockets = new Set<import('node:net').Socket>();
  /** Automatic failover: the arbiter lease (undefined without an arbiter). */
  readonly lease?: LeaseKeeper;
  /** A switchover waiting for the replication loop to hand the role over at the head. */
  private handover?: { resolve: (epoch: number) => void; reject: (err: Error) => void };
  private lastPromoteRun?: MirrorStatus['promote_command'];
  /** Mode sync: the MTA's barriers and the sync_timeout policies (sync-mode.ts). */
  readonly sync?: SyncMode;
  port = 0;

  constructor(
    readonly config: MirrorConfig,
    readonly logger: Logger,
    /** Tests: the clock, the MTA fence, the secondary's batch writer (held to see what the primary does meanwhile), the promote_command runner, a wrapper around the arbiter (to hold its writes), the sync scan pace's wait, a lower frame limit for the link (both ends). */
    private readonly hooks: { now?: () => number; fence?: (pid: number) => void; apply?: typeof applyBatch; promoteCommand?: typeof runPromoteCommand; arbiter?: (a: Arbiter) => Arbiter; pause?: typeof pause; frameMax?: number } = {},
  ) {
    this.state = readState(config.persistentPath);
    try {
      this.secret = loadSecret({ file: config.secretFile, env: MIRROR_SECRET_ENV });
    } catch (err) {
      // The loader is the proxy link's: say which secret this is.
      throw new VolleyError('ESECRET', `mirror secret_file (or ${MIRROR_SECRET_ENV}): ${(err as Error).message.replace(/proxy secret/g, 'secret')}`);
    }
    if (config.arbiter) {
      this.lease = new LeaseKeeper({
        arbiter: (hooks.arbiter ?? ((a: Arbiter) => a))(openArbiter(config.arbiter, config.leaseTtlMs)),
        name: config.name,
        ttlMs: config.leaseTtlMs,
        logger,
        now: hooks.now,
        host: {
          state: () => this.state,
          selfFence: (why) => this.demote(this.state.epoch, why),
          superseded: (l: Lease) => this.demote(l.epoch, `the arbiter lease names ${l.holder} as the primary of epoch ${l.epoch}`),
          cannotTakeOver: (l: Lease) => this.cannotTakeOver(l),
          tookOver: (epoch) => this.becomePrimary(epoch, 'the primary\'s arbiter lease expired'),
        },
      });
    }
    if (config.mode === 'sync') {
      const daemon = this;
      this.sync = new SyncMode({
        config,
        logger,
        get state() {
          return daemon.state;
        },
        saveState: (s) => this.setState(s),
        // Only while the link is up: a barrier must not turn the reconnect wait into a dial per message.
        kick: () => this.sender !== undefined && this.wake?.(),
        ...(this.lease ? { writeLease: () => this.lease!.renewNow() } : {}),
        lastContact: () => this.lastContact,
        now: () => this.now(),
      });
    }
  }

  private now(): number {
    return (this.hooks.now ?? Date.now)();
  }

  async start(): Promise<void> {
    let tls: { key: Buffer; cert: Buffer };
    try {
      tls = { key: readFileSync(this.config.tls.key), cert: readFileSync(this.config.tls.cert) };
    } catch (err) {
      throw new VolleyError('ETLSFILES', `cannot read the mirror's TLS files: ${(err as Error).message}`);
    }
    this.server = createServer({ ...tls, minVersion: 'TLSv1.2', handshakeTimeout: this.config.handshakeTimeoutMs });
    this.server.on('connection', (socket: import('node:net').Socket) => {
      // The secondary answers batches with small frames (acks) back to back: with Nagle on, the
      // second waits for the primary's delayed ACK of the first, ~40 ms per batch (every sync barrier).
      socket.setNoDelay(true);
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    this.server.on('secureConnection', (socket: TLSSocket) => void this.accept(socket));
    this.server.on('tlsClientError', (err) => this.logger.warn({ err: err.message }, 'mirror: TLS handshake failed'));
    this.quarantine = await quarantineSummary(this.config.persistentPath);
    this.port = await listen(this.server as unknown as import('node:net').Server, this.config.listen.port, this.config.listen.address);
    await this.sync?.start();
    this.logger.info({ role: this.state.role, epoch: this.state.epoch, mode: this.config.mode, listen: `${this.config.listen.address}:${this.port}`, peer: this.peerName() }, 'mirror started');
    if (this.state.role === 'primary') void this.dialLoop();
    this.lease?.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    // A primary that keeps a lease and stops renewing it hands the slot to its peer
    // within lease_ttl: its MTA must not outlive that (the fence timer dies with this process).
    const handing = this.lease !== undefined && this.state.role === 'primary' && this.lease.status().held_until !== undefined;
    await this.lease?.stop();
    if (handing) await this.fenceMta('the mirror is stopping: its lease will lapse and the peer may take over');
    this.handover?.reject(new VolleyError('ESTOPPING', 'the mirror is stopping'));
    this.wake?.();
    this.inbound?.close();
    this.outbound?.close();
    for (const s of this.sockets) s.destroy();
    await this.sync?.stop();
    await new Promise<void>((r) => (this.server?.listening ? this.server.close(() => r()) : r()));
  }

  peerName(): string {
    return `${this.config.peer.address}:${this.config.peer.port}`;
  }

  status(): MirrorStatus {
    const primary = this.state.role === 'primary';
    const s = this.sender?.stats();
    return {
      name: this.config.name,
      role: this.state.role,
      epoch: this.state.epoch,
      mode: this.config.mode,
      peer: this.peerName(),
      peer_connected: primary ? this.outbound?.open === true && this.sender !== undefined : this.inbound?.open === true,
      caught_up: primary ? s?.caughtUp === true && this.outbound?.open === true : this.state.caughtUp,
      lag_bytes: primary ? (s?.lagBytes ?? 0) : this.peerLag.bytes,
      lag_seconds: primary ? (s?.lagSeconds ?? 0) : this.peerLag.seconds,
      ...(this.lastContact ? { last_contact: new Date(this.lastContact).toISOString() } : {}),
      ...(primary && s?.durableThrough !== undefined ? { durable_through: new Date(s.durableThrough).toISOString() } : {}),
      full_resyncs: s?.fullResyncs ?? 0,
      refused_files: primary ? (s?.refused.length ?? 0) : 0,
      bytes_sent: s?.bytesSent ?? 0,
      bytes_received: this.bytesReceived,
      batches: this.batches,
      demotions: this.demotions,
      ...(this.lease ? { lease: this.lease.status() } : {}),
      ...(this.lastPromoteRun ? { promote_command: this.lastPromoteRun } : {}),
      quarantine: this.quarantine,
      ...(this.sync ? { sync: this.sync.status() } : {}),
    };
  }

  /**
   * Manual promotion: this secondary becomes the primary of epoch + 1. Refused
   * on a node that is not caught up (it would serve an older queue) unless
   * `force`; the old primary, if it is still connected, is told the new epoch
   * (it fences itself), and is fenced too whenever it reconnects.
   */
  async promote(force: boolean): Promise<MirrorState> {
    if (this.state.role === 'primary') throw new VolleyError('EALREADYPRIMARY', `this node is already the primary (epoch ${this.state.epoch})`);
    if (this.state.outdated && !force) {
      throw new VolleyError('EOUTDATED', 'this secondary is outdated: it lost contact with its sync primary for longer than sync_timeout under policy degrade, and the primary may have acknowledged mail it does not hold; use --force to promote anyway');
    }
    if (!this.state.caughtUp && !force) {
      throw new VolleyError('ENOTCAUGHTUP', 'this secondary is not caught up with the primary: promoting it would lose mail the primary holds; use --force to promote anyway');
    }
    // With an arbiter the lease comes first: refused while the primary holds it (unless forced).
    await this.lease?.acquire(this.state.epoch + 1, { force });
    this.becomePrimary(this.state.epoch + 1, force ? 'promoted by hand (--force)' : 'promoted by hand');
    return this.state;
  }

  /** A planned switchover (switchover.ts), run on the primary. */
  switchover(timeoutMs: number): Promise<SwitchoverResult> {
    return runSwitchover(
      {
        config: this.config,
        logger: this.logger,
        status: () => this.status(),
        requestHandover: (ms) => this.requestHandover(ms),
        kill: (pid) => (this.hooks.fence ? this.hooks.fence(pid) : process.kill(pid, 'SIGTERM')),
        now: () => this.now(),
      },
      timeoutMs,
    );
  }

  private requestHandover(timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const request = { resolve, reject };
      this.handover = request;
      setTimeout(() => {
        if (this.handover !== request) return;
        this.handover = undefined;
        reject(new VolleyError('ETIMEDOUT', 'the replication loop did not reach the head in time: nothing was handed over'));
      }, timeoutMs);
      this.wake?.();
    });
  }

  /** Switchover, primary side, at the head: step down durably, then tell the peer to take over. */
  private async handOver(channel: FrameChannel, request: NonNullable<MirrorDaemon['handover']>): Promise<void> {
    this.handover = undefined;
    const from = this.state.epoch;
    const to = from + 1;
    this.lease?.released();
    // Durable before the peer hears of it: this node never serves epoch `from` again, whatever happens next.
    this.setState({ role: 'secondary', epoch: to, caughtUp: true });
    this.sync?.demoted();
    this.sender = undefined;
    try {
      channel.send({ t: 'takeover', epoch: from, promote_to: to, holder: this.config.name });
      const f = await channel.next(this.config.handshakeTimeoutMs);
      if (f.header.t !== 'took_over') throw new VolleyError('ESWITCHOVER', `the peer did not take over: ${String(f.header.message ?? f.header.t).slice(0, 300)}`);
      request.resolve(to);
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'mirror: switchover: the peer did not confirm it took over; this node stays a secondary (promote one of the two by hand)');
      request.reject(new VolleyError(errorCode(err) ?? 'ESWITCHOVER', `${(err as Error).message}; this node is a secondary of epoch ${to} now: promote the node that should serve (volley mirror promote)`));
    } finally {
      channel.end();
    }
  }

  /** Switchover, secondary side: take the lease handed over, become the primary, confirm. */
  private async takeOver(channel: FrameChannel, f: Frame, synced: boolean): Promise<void> {
    const from = epochOf(f);
    const to = f.header.promote_to;
    const holder = f.header.holder;
    if (to !== from + 1 || typeof holder !== 'string') throw new VolleyError('EMIRRORPROTO', 'takeover without promote_to = epoch + 1 and a holder');
    try {
      if (!synced || !this.state.caughtUp) throw new VolleyError('ENOTCAUGHTUP', 'this secondary is not caught up');
      await this.lease?.acquire(to, { from: { holder, epoch: from } });
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'mirror: switchover: refused to take over');
      channel.send({ t: 'error', code: errorCode(err) ?? 'ESWITCHOVER', message: (err as Error).message });
      return channel.end();
    }
    channel.send({ t: 'took_over', epoch: to });
    this.inbound = undefined;
    channel.end();
    this.becomePrimary(to, 'planned switchover');
  }

  /** Why this secondary may not take the expired lease `l` automatically (undefined: it may). */
  private cannotTakeOver(l: Lease): string | undefined {
    if (this.state.role === 'primary') return 'this node is the primary';
    if (!this.state.caughtUp) return 'this node is not caught up with the primary';
    if (this.state.outdated) return 'this node is outdated (its primary acknowledged mail without it)';
    if (l.peer_outdated) return 'the primary\'s lease says its secondary is outdated';
    if (l.epoch > this.state.epoch) return `the lease names epoch ${l.epoch}, newer than this node's ${this.state.epoch}`;
    return undefined;
  }

  /** This node is the primary of `epoch` from now on: durable first, then the old primary told, then promote_command. */
  private becomePrimary(epoch: number, why: string): void {
    // Its own data is the truth from now on: neither it nor a peer it has not met yet is behind.
    this.setState({ role: 'primary', epoch, caughtUp: this.state.caughtUp, outdated: false, peerOutdated: false });
    this.sync?.promoted();
    this.logger.warn({ epoch, why }, 'mirror: promoted to primary');
    // Promoted mid-catch-up: what it set aside so far is filed now (once the receive loop has let go), against what it serves from here on.
    const filed = receiveLoopsDone(this.receiving, this.logger, (waiting) => {
      if (this.lastPromoteRun?.epoch === epoch && this.lastPromoteRun.exit === undefined && this.lastPromoteRun.error === undefined) this.lastPromoteRun = { epoch, waiting };
    })
      .then(() => fileOnPromotion(this.config.persistentPath, epoch, this.logger, this.now()))
      .then(async () => void (this.quarantine = await quarantineSummary(this.config.persistentPath)))
      .catch((err: Error) => this.logger.error({ err: err.message }, 'mirror: filing the quarantine at promotion failed; the originals stay in mirror/quarantine/pending'));
    const old = this.inbound;
    if (old?.open) {
      try {
        old.send({ t: 'fence', epoch: this.state.epoch });
      } catch {
        // closed meanwhile: it is fenced when it reconnects
      }
      old.end();
    }
    void this.dialLoop();
    const argv = this.config.promoteCommand;
    if (argv) {
      this.lastPromoteRun = { epoch };
      // Not before the receive loop let go of the spool (and the quarantine is filed): the MTA it starts would share the files with it.
      void filed.then(() => (this.hooks.promoteCommand ?? runPromoteCommand)(argv, epoch, this.logger)).then((r) => (this.lastPromoteRun = { epoch, exit: r.exit, ...(r.error ? { error: r.error } : {}) }));
    }
  }

  private setState(s: MirrorState): void {
    writeState(this.config.persistentPath, s);
    this.state = s;
  }

  /** A higher epoch was seen: become (or stay) a secondary of that epoch, fencing the MTA if this node was primary. */
  private demote(epoch: number, why: string): void {
    const wasPrimary = this.state.role === 'primary';
    // Before the role changes: what this primary accepted that the new one never got must be set aside, not overwritten.
    if (wasPrimary) {
      markForQuarantine(this.config.persistentPath, this.state.epoch, `was primary of epoch ${this.state.epoch}; demoted: ${why}`, this.now());
      this.quarantine = { ...this.quarantine, pending: true };
    }
    this.setState({ role: 'secondary', epoch: Math.max(epoch, this.state.epoch), caughtUp: false });
    if (!wasPrimary) return;
    this.lease?.released();
    this.demotions++;
    this.sync?.demoted();
    this.logger.error({ epoch, why }, 'mirror: this node is a secondary now');
    this.sender = undefined;
    this.outbound?.close();
    void this.fenceMta(why);
  }

  private async fenceMta(why: string): Promise<void> {
    if (this.config.fence === 'none') return;
    // With a lease the whole fence must fit in its safety margin: the admin call gets an eighth of the ttl at most.
    const intakeTimeoutMs = this.lease ? Math.min(1_000, this.config.leaseTtlMs / 8) : undefined;
    await fenceMta({ persistentPath: this.config.persistentPath, mtaAdmin: this.config.mtaAdmin, tokenFile: this.config.mtaAdminTokenFile, logger: this.logger, kill: this.hooks.fence, intakeTimeoutMs }, why);
  }

  // ---- the secondary's side: a primary dials in ----

  private async accept(socket: TLSSocket): Promise<void> {
    const channel = new FrameChannel(socket);
    try {
      const hello = await serverHandshake(channel, this.secret, { timeoutMs: this.config.handshakeTimeoutMs, name: this.config.name, sendingIps: [], channels: ['mirror'], keepalive: true });
      if (this.hooks.frameMax !== undefined) channel.maxFrame = this.hooks.frameMax;
      keepAlive(channel, { intervalMs: Math.max(hello.pingMs ?? LINK_PING_MS, MIN_PING_MS), misses: PROXY_SIDE_MISSES, ping: false, beacon: true });
      const open = await channel.next(this.config.handshakeTimeoutMs);
      if (open.header.t !== 'mirror_open') throw new VolleyError('EMIRRORPROTO', `expected mirror_open, got ${String(open.header.t).slice(0, 40)}`);
      const epoch = epochOf(open);
      if (epoch < this.state.epoch) {
        // A primary of an older epoch (one this node or another replaced): it must stop.
        channel.send({ t: 'fence', epoch: this.state.epoch });
        this.logger.warn({ peerEpoch: epoch, epoch: this.state.epoch }, 'mirror: fenced a peer of an older epoch');
        return channel.end();
      }
      if (this.state.role === 'primary' && epoch === this.state.epoch) {
        channel.send({ t: 'error', code: 'split', message: `both nodes are primary of epoch ${epoch}: promote one with --force to break the tie` });
        this.logger.error({ epoch }, 'mirror: both nodes claim to be primary of the same epoch: refusing to replicate');
        return channel.end();
      }
      if (epoch > this.state.epoch || this.state.role === 'primary') this.demote(epoch, 'a primary of a higher epoch dialed in');
      const mta = liveMtaPid(this.config.persistentPath);
      if (mta !== undefined) {
        // Writing under a running MTA would corrupt its spool: the operator stops it (or this node was just fenced and it is stopping).
        // It may take mail meanwhile, and a clean stop takes its lock with it: marked now, the next catch-up sets that mail aside.
        markForQuarantine(this.config.persistentPath, this.state.epoch, `an MTA (pid ${mta}) ran on this path while it was a secondary`, this.now());
        this.quarantine = { ...this.quarantine, pending: true };
        channel.send({ t: 'error', code: 'mta-running', message: `an MTA (pid ${mta}) is running on the secondary's persistent path: stop it before this node can mirror` });
        this.logger.error({ pid: mta }, 'mirror: an MTA is running on this secondary\'s persistent path: refusing to replicate into it');
        return channel.end();
      }
      // An old link's loop may still be in a batch (a slow disk): its writes must land before this
      // link's inventory is taken. A catch-up planned from an inventory without them is cut by them
      // afterwards (a new segment's truncate to 0), and the next append leaves a hole.
      for (;;) {
        this.inbound?.close();
        const writing = [...this.receiving];
        if (writing.length === 0) break;
        this.logger.warn({ loops: writing.length }, 'mirror: a new link waits for the old link\'s receive loop to finish its batch');
        await Promise.all(writing);
        if (!channel.open || this.stopped) return channel.close();
      }
      if (this.state.role === 'primary' || epoch < this.state.epoch) {
        // Promoted (or told of a newer epoch) while it waited.
        channel.send({ t: 'fence', epoch: this.state.epoch });
        return channel.end();
      }
      this.inbound = channel;
      this.lastContact = this.now();
      this.logger.info({ peer: hello.name, epoch }, 'mirror: primary connected');
      const run = this.receive(channel);
      const loop = run.catch(() => undefined);
      this.receiving.add(loop);
      void loop.then(() => this.receiving.delete(loop));
      await run;
    } catch (err) {
      if (channel.open) this.logger.warn({ err: (err as Error).message }, 'mirror: inbound link failed');
      channel.close();
    }
  }

  private async receive(channel: FrameChannel): Promise<void> {
    let guard = guardCatchUp(this.config.persistentPath, this.state.epoch, lockPid(this.config.persistentPath), this.logger, this.now());
    if (guard) this.quarantine = { ...this.quarantine, pending: true };
    const files: Inventory = await inventory(this.config.persistentPath);
    channel.send({ t: 'inventory', epoch: this.state.epoch, files });
    let synced = false;
    while (channel.open && !this.stopped) {
      let f: Frame;
      try {
        f = await channel.next();
      } catch {
        break;
      }
      // A ping is word from the primary too: an idle sync primary is not a silent one.
      this.lastContact = this.now();
      if (f.header.t === 'ping') {
        channel.send({ t: 'pong' });
        continue;
      }
      const epoch = epochOf(f);
      if (epoch < this.state.epoch || this.state.role === 'primary') {
        channel.send({ t: 'fence', epoch: this.state.epoch });
        return channel.end();
      }
      if (epoch > this.state.epoch) this.setState({ ...this.state, epoch });
      if (f.header.t === 'batch') {
        this.peerLag = lagOf(f.header) ?? this.peerLag;
        const seq = f.header.seq;
        const body = f.body ?? Buffer.alloc(0);
        const ops = parseOps(f.header.ops, body.length);
        // A full copy of a file this node holds (its history diverged on the primary) cuts it first:
        // not caught up (nor promotable) until the primary says so again, even mid-session.
        if (f.header.resync === true) synced = false;
        // Bytes of a catch-up are landing: until the primary says it is done, this node is not promotable.
        if (!synced && this.state.caughtUp) this.setState({ ...this.state, caughtUp: false });
        await guard?.protect(ops);
        try {
          await (this.hooks.apply ?? applyBatch)(this.config.persistentPath, ops, body);
        } catch (err) {
          if (errorCode(err) === 'EMIRROROWN' && !guard) {
            // Bytes of its own (an MTA ran on this path meanwhile and stopped): the next catch-up sets them aside, not over.
            markForQuarantine(this.config.persistentPath, this.state.epoch, `it held bytes its primary never sent (${(err as Error).message})`, this.now());
            this.quarantine = { ...this.quarantine, pending: true };
            this.logger.error({ err: (err as Error).message }, 'mirror: this secondary holds bytes its primary never sent (did an MTA run on its persistent path?): refused the batch; the next catch-up quarantines them');
          }
          throw err;
        }
        this.bytesReceived += body.length;
        this.batches++;
        // The only answer to a batch (a `received` frame before it went unread): a frame and a wake-up less each way.
        channel.send({ t: 'ack', epoch: this.state.epoch, seq, durable: true });
      } else if (f.header.t === 'synced') {
        synced = true;
        if (guard) {
          await guard.finish(epoch, this.now());
          // Filed once: a later `synced` (after a degrade on this link) finds nothing of this node's own left.
          guard = undefined;
          this.quarantine = await quarantineSummary(this.config.persistentPath);
        }
        if (!this.state.caughtUp) this.setState({ ...this.state, caughtUp: true });
        this.sync?.secondaryCaughtUp();
        this.logger.info({ epoch }, 'mirror: caught up with the primary');
      } else if (f.header.t === 'takeover') {
        // A planned switchover: the primary stopped its MTA, made sure this node holds everything, and stepped down.
        return this.takeOver(channel, f, synced);
      } else if (f.header.t === 'status') {
        this.peerLag = lagOf(f.header) ?? { bytes: 0, seconds: 0 };
      } else {
        throw new VolleyError('EMIRRORPROTO', `unexpected frame ${String(f.header.t).slice(0, 40)}`);
      }
    }
  }

  // ---- the primary's side: dial the peer and replicate ----

  private async dialLoop(): Promise<void> {
    if (this.dialing) return;
    this.dialing = true;
    let failure = '';
    try {
      while (!this.stopped && this.state.role === 'primary') {
        try {
          await this.replicate();
          failure = '';
        } catch (err) {
          // One warning per kind of failure, not one per retry: a peer down for an hour is one line, not thousands.
          const message = (err as Error).message;
          if (!this.stopped) this.logger[message === failure ? 'debug' : 'warn']({ err: message, peer: this.peerName() }, 'mirror: link to the secondary failed; retrying');
          failure = message;
        }
        this.sender = undefined;
        this.outbound?.close();
        if (this.stopped || this.state.role !== 'primary') break;
        await this.sleep(this.config.reconnectIntervalMs);
      }
    } finally {
      this.dialing = false;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private async replicate(): Promise<void> {
    const { channel } = await dialProxy(
      { host: this.config.peer.address, port: this.config.peer.port, fingerprint: this.config.peerFingerprint, ca: this.config.peerCa ? readFileSync(this.config.peerCa) : undefined, name: this.peerName() },
      { secret: this.secret, connectTimeoutMs: this.config.handshakeTimeoutMs, handshakeTimeoutMs: this.config.handshakeTimeoutMs, name: this.config.name, channel: 'mirror', ...(this.sync ? { pingMs: syncPingMs(this.config.syncTimeoutMs, LINK_PING_MS) } : {}) },
    );
    this.outbound = channel;
    channel.send({ t: 'mirror_open', epoch: this.state.epoch, role: 'primary', name: this.config.name });
    const first = await this.expect(channel, this.config.handshakeTimeoutMs);
    if (first.header.t === 'error') throw new VolleyError('EMIRRORPEER', `the peer refused: ${String(first.header.message ?? first.header.code)}`);
    if (first.header.t !== 'inventory' || typeof first.header.files !== 'object' || first.header.files === null) throw new VolleyError('EMIRRORPROTO', `expected inventory, got ${String(first.header.t).slice(0, 40)}`);
    const sender = new Sender({ root: this.config.persistentPath, batchMaxBytes: this.config.batchMaxBytes, resyncRateBytes: this.config.resyncRateBytes, now: this.hooks.now, frameMaxBytes: this.hooks.frameMax });
    await sender.start(first.header.files as Inventory);
    this.sender = sender;
    this.lastContact = this.now();
    this.logger.info({ peer: this.peerName(), epoch: this.state.epoch }, 'mirror: secondary connected, catching it up');
    let seq = 0;
    let syncedSent = false;
    const lag = new LagReport();
    /** Refused files already logged, at the size they were refused at. */
    const told = new Map<string, number>();
    // One batch on the link, in mode sync too: the barriers that come while it is out share the next
    // scan, after its ack and the pace's gap, instead of a second batch each (scan-pace.ts). Measured
    // against two on the link: fewer batches a message and less CPU on both mirrors, the mean barrier
    // latency no worse; the pace's gap costs ~1-2 ms of it for half the batches again (test/bench/README.md).
    const flight = new InFlight(1, () => this.expect(channel));
    const pace = this.sync ? new ScanPace(SYNC_SCAN_GAP_MS, () => this.now()) : undefined;
    while (channel.open && !this.stopped && this.state.role === 'primary') {
      // Paced only when barriers wait for this scan: the idle poll and catch-up neither wait nor set the pace.
      const forBarriers = pace !== undefined && this.sync!.barriers.needsScan();
      const wait = forBarriers ? pace.delay() : 0;
      if (wait > 0) await (this.hooks.pause ?? pause)(wait);
      if (!channel.open || this.stopped || this.state.role !== 'primary') break;
      if (forBarriers) pace.started();
      const scan = this.sync?.barriers.scanStarted();
      const batch = await sender.next();
      // The secondary shows the lag the primary measured: told whenever it changes, in the batch's header when one goes out (lag-report.ts).
      const { lagBytes, lagSeconds, refused } = sender.stats();
      for (const r of refused) {
        if (told.get(r.path) === r.size) continue;
        told.set(r.path, r.size);
        this.logger.error({ file: r.path, size: r.size }, 'mirror: a file too large for one frame of the link is not replicated (the secondary keeps its older copy, if any): make it smaller (e.g. a SQLite sink\'s max_size)');
      }
      const idle = batch ? undefined : lag.forIdle(lagBytes, lagSeconds);
      if (idle) channel.send({ t: 'status', epoch: this.state.epoch, ...idle });
      if (!batch) {
        // Nothing is out here: every batch sent is landed (its ack read) before the next scan.
        const s = sender.stats();
        if (scan !== undefined && s.lagBytes === 0) this.sync!.barriers.durable(scan);
        // Again after a degrade on this very link: the secondary caught up once more (and peer_outdated clears).
        if (s.caughtUp && (!syncedSent || this.sync?.behind === true) && (this.sync?.peerCaughtUp() ?? true)) {
          channel.send({ t: 'synced', epoch: this.state.epoch });
          syncedSent = true;
          this.logger.info({ epoch: this.state.epoch }, 'mirror: the secondary is caught up');
        }
        if (this.handover && s.caughtUp && syncedSent) return this.handOver(channel, this.handover);
        // A barrier that came during this scan (its wake-up found no sleep to cut) needs the next one now.
        if (this.sync?.barriers.needsScan()) continue;
        await this.sleep(this.config.pollIntervalMs);
        continue;
      }
      flight.add({ seq: ++seq, batch, ...(scan !== undefined ? { scan } : {}) });
      // A full copy cuts the secondary's file first: it is not promotable until told it is caught up again.
      if (batch.resync) syncedSent = false;
      channel.send({ t: 'batch', epoch: this.state.epoch, seq, ops: batch.ops, ...(batch.resync ? { resync: true } : {}), ...lag.forBatch(lagBytes, lagSeconds) }, batch.body);
      await this.land(flight, sender);
    }
  }

  /** Waits for the oldest batch's durable ack and records it (answering the barriers its scan covers). */
  private async land(flight: InFlight, sender: Sender): Promise<void> {
    const entry = await flight.acked();
    flight.landed(entry);
    this.lastContact = this.now();
    this.batches++;
    sender.acked(entry.batch);
    if (entry.scan !== undefined && entry.batch.complete) this.sync!.barriers.durable(entry.scan);
  }

  /** The next frame from the secondary, after the epoch check every frame gets. */
  private async expect(channel: FrameChannel, timeoutMs?: number): Promise<Frame> {
    const f = await channel.next(timeoutMs);
    if (f.header.t === 'error') return f;
    const epoch = epochOf(f);
    if (f.header.t === 'fence' || epoch > this.state.epoch) {
      if (epoch > this.state.epoch) this.demote(epoch, `the peer answered with epoch ${epoch}`);
      throw new VolleyError('EFENCED', `fenced by the peer (epoch ${epoch})`);
    }
    return f;
  }
}
