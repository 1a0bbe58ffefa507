// One client connection: find a backend that connects (and in SMTP mode
// greets with 220) while the client waits, trying the next one on any failure,
// then pipe bytes both ways until either side is done.
import type { Socket } from 'node:net';
import { endSocket } from '../shared/end-socket';
import type { Logger } from '../shared/log';
import { connectBackend, proxyV1Header } from './backend-connect';
import type { Backend, BackendPool } from './backend-pool';
import type { LbMetrics } from './metrics';
import type { LbOptions, ListenerOptions } from './options';

export const NO_BACKEND_REPLY = '421 4.3.2 no MTA available, try again later\r\n';

/** Bytes a client may send before its backend is chosen (early talkers); past it, reading pauses. */
const MAX_EARLY_BYTES = 64 * 1024;
/** After one side has closed, how long the other may take to finish writing. */
const CLOSE_LINGER_MS = 5000;
/**
 * The abort reason. abort() with none builds a DOMException with a stack
 * trace, which showed in the lb's profile when it ran once per connection.
 */
const CLIENT_GONE = Object.freeze({ code: 'ECLIENTGONE', message: 'the client went away' });

export interface ListenerCounters {
  connections: number;
  retries: number;
  rejectedMaxConnections: number;
  /** Turned away because their address had maxConnectionsPerClient open. */
  rejectedPerClient: number;
  noBackend: number;
}

export interface SessionContext {
  counters: ListenerCounters;
  listener: ListenerOptions;
  pool: BackendPool;
  options: LbOptions;
  metrics: LbMetrics;
  logger: Logger;
}

export class Session {
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readonly abort = new AbortController();
  private backendSocket?: Socket;
  private clientClosed = false;
  private backendClosed = true;
  private finished = false;
  /**
   * The last 4xx greeting an MTA refused this client with. If no MTA takes the
   * client, it gets this (e.g. "421 4.7.0 too many connections from your
   * address") instead of the lb's own 421, which would blame the MTAs.
   */
  private refusal?: string;
  /** Bytes read from both sides at the last sweep that saw them change, and when (idleFor). */
  private quietBytes?: number;
  private quietSince = 0;

  constructor(
    private readonly ctx: SessionContext,
    private readonly client: Socket,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  /** Never rejects: every failure ends in a closed client socket. */
  async run(): Promise<void> {
    const { client } = this;
    client.on('error', () => undefined);
    client.once('close', () => {
      this.clientClosed = true;
      if (!this.backendSocket) this.abort.abort(CLIENT_GONE);
      this.maybeFinish();
    });
    const early: Buffer[] = [];
    let earlyBytes = 0;
    const onEarly = (d: Buffer): void => {
      early.push(d);
      earlyBytes += d.length;
      if (earlyBytes > MAX_EARLY_BYTES) client.pause();
    };
    // A FIN before the backend is chosen means the client left: stop trying.
    const onEarlyEnd = (): void => this.abort.abort(CLIENT_GONE);
    client.on('data', onEarly);
    client.once('end', onEarlyEnd);
    try {
      const chosen = await this.choose();
      client.removeListener('data', onEarly);
      client.removeListener('end', onEarlyEnd);
      if (this.abort.signal.aborted) {
        if (chosen) {
          chosen.socket.destroy();
          chosen.backend.active--;
        }
        client.destroy();
        return;
      }
      if (!chosen) {
        this.ctx.counters.noBackend++;
        this.ctx.metrics.rejected.inc({ listener: this.ctx.listener.name, reason: 'no_backend' });
        this.ctx.logger.warn({ listener: this.ctx.listener.name, client: client.remoteAddress }, 'every backend failed; client turned away');
        if (this.ctx.listener.mode === 'smtp') {
          endSocket(client, CLOSE_LINGER_MS, this.refusal ?? NO_BACKEND_REPLY);
        } else {
          client.destroy();
        }
        return;
      }
      this.splice(chosen.backend, chosen.socket, chosen.greeting, early);
    } catch (err) {
      this.ctx.logger.error({ err, listener: this.ctx.listener.name }, 'session failed');
      this.destroy();
    }
  }

  /** Closes both sides now (end of the drain timeout). */
  destroy(): void {
    this.abort.abort(CLIENT_GONE);
    this.backendSocket?.destroy();
    this.client.destroy();
  }

  private async choose(): Promise<{ backend: Backend; socket: Socket; greeting: Buffer } | undefined> {
    const { pool, listener, options, metrics, logger } = this.ctx;
    const tried = new Set<Backend>();
    for (;;) {
      if (this.abort.signal.aborted) return undefined;
      const b = pool.pick(tried);
      if (!b) return undefined;
      if (tried.size > 0) {
        this.ctx.counters.retries++;
        metrics.retries.inc({ listener: listener.name });
      }
      tried.add(b);
      b.active++;
      const r = await connectBackend({
        backend: b.address,
        mode: listener.mode,
        connectTimeoutMs: options.connectTimeoutMs,
        greetingTimeoutMs: options.greetingTimeoutMs,
        localAddress: options.sourceAddress,
        proxyHeader: listener.proxyProtocol ? proxyV1Header(this.client) : undefined,
        signal: this.abort.signal,
      });
      if (r.ok) {
        pool.reportSuccess(b, false);
        b.served++;
        return { backend: b, socket: r.socket, greeting: r.greeting };
      }
      b.active--;
      if (r.reason === 'aborted') return undefined;
      logger.warn({ listener: listener.name, backend: b.id, reason: r.reason, detail: r.detail }, 'backend failed; trying the next');
      if (r.refusal) {
        pool.reportRefusal(b, r.detail);
        if (r.refusal.startsWith('4')) this.refusal = r.refusal.replace(/\r?\n/g, '\r\n');
      } else {
        pool.reportFailure(b, r.reason, r.detail);
      }
    }
  }

  /**
   * Relays bytes both ways. Plain 'data' handlers with backpressure rather
   * than pipe(), which adds its own bookkeeping on every chunk; and no
   * per-socket idle timer, which Node refreshes on every read and write:
   * the lb's sweep (idleFor) reads the byte counters Node keeps anyway.
   */
  private splice(b: Backend, backend: Socket, greeting: Buffer, early: Buffer[]): void {
    const { client } = this;
    this.backendSocket = backend;
    this.backendClosed = false;
    this.quietBytes = -1;
    const onError = (): void => {
      client.destroy();
      backend.destroy();
    };
    client.on('error', onError);
    backend.on('error', onError);
    backend.once('close', () => {
      this.backendClosed = true;
      b.active--;
      this.linger(client);
      this.maybeFinish();
    });
    client.once('close', () => this.linger(backend));
    if (this.ctx.listener.mode === 'smtp') {
      // The MTA closed (after its 221, or a 421): the session is over. Closing
      // the client now, once its last reply is handed to the kernel, rather
      // than half-closing and waiting for its FIN: a client that quits
      // without reading the 221 (Postfix's default, smtp-source too) then
      // resets the connection, and reading that reset made Node build and
      // format an error with its stack trace for every message: measured,
      // ~10 % of the lb's CPU.
      backend.once('end', () => {
        backend.destroy();
        if (client.writableLength === 0) client.destroy();
        else client.end();
      });
    } else {
      backend.once('end', () => client.end());
    }
    client.once('end', () => backend.end());
    relay(backend, client);
    relay(client, backend);
    if (greeting.length > 0) client.write(greeting);
    for (const d of early) backend.write(d);
    client.resume();
    backend.resume();
  }

  /**
   * How long the spliced session has moved no byte either way, as seen at
   * `now` by the lb's periodic sweep (0 when something moved since the last
   * sweep, or while a backend is still being chosen).
   */
  idleFor(now: number): number {
    const backend = this.backendSocket;
    if (!backend || this.quietBytes === undefined) return 0;
    const bytes = this.client.bytesRead + backend.bytesRead;
    if (bytes !== this.quietBytes) {
      this.quietBytes = bytes;
      this.quietSince = now;
      return 0;
    }
    return now - this.quietSince;
  }

  /** The idle timeout passed: both sides closed now. */
  closeIdle(): void {
    this.ctx.logger.info({ listener: this.ctx.listener.name }, 'idle session closed');
    this.backendSocket?.destroy();
    this.client.destroy();
  }

  /** The other side closed: let this one finish writing, then close it. */
  private linger(s: Socket): void {
    endSocket(s, CLOSE_LINGER_MS);
  }

  private maybeFinish(): void {
    if (this.finished || !this.clientClosed || !this.backendClosed) return;
    this.finished = true;
    this.resolveDone();
  }
}

/** Copies `from` to `to`, pausing `from` while `to` has more queued than its high-water mark. */
function relay(from: Socket, to: Socket): void {
  from.on('data', (d: Buffer) => {
    if (!to.write(d)) from.pause();
  });
  to.on('drain', () => from.resume());
}
