import type { TLSSocket } from 'node:tls';
import { FrameDecoder, ProtocolError, encodeFrame, type Frame, type FrameHeader } from './codec';

interface Waiter {
  resolve: (f: Frame) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

/**
 * A TLS socket spoken in frames: `send` writes one, `next` waits for the next
 * one in order. The first malformed byte, a close or a timeout fails every
 * waiter and destroys the socket; `closedReason` says why.
 */
export class FrameChannel {
  private readonly decoder: FrameDecoder;
  private readonly queue: Frame[] = [];
  private readonly waiters: Waiter[] = [];
  closedReason?: Error;
  /** Called for frames nobody waits for (e.g. a ping); unset: they queue. */
  onUnsolicited?: (f: Frame) => boolean;
  private readonly closeListeners: ((reason: Error) => void)[] = [];
  /** Bytes received so far (whole frames or not): the liveness check's sign of life. */
  bytesIn = 0;
  /**
   * Set by keepAlive: pongs are taken off the stream before anyone waiting
   * for an answer sees them (a pong can arrive while a connect is pending).
   */
  swallowPongs = false;

  constructor(readonly socket: TLSSocket, maxFrame?: number) {
    this.decoder = new FrameDecoder(maxFrame);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new ProtocolError('connection closed by the peer')));
  }

  get open(): boolean {
    return this.closedReason === undefined;
  }

  set maxFrame(n: number) {
    this.decoder.maxFrame = n;
  }

  onClose(listener: (reason: Error) => void): void {
    if (this.closedReason) listener(this.closedReason);
    else this.closeListeners.push(listener);
  }

  send(header: FrameHeader | { t: string }, body?: Buffer): void {
    if (!this.open) throw this.closedReason!;
    this.socket.write(encodeFrame(header, body));
  }

  next(timeoutMs?: number): Promise<Frame> {
    const ready = this.queue.shift();
    if (ready) return Promise.resolve(ready);
    if (this.closedReason) return Promise.reject(this.closedReason);
    return new Promise((resolve, reject) => {
      const w: Waiter = { resolve, reject };
      if (timeoutMs !== undefined) {
        w.timer = setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          const err = Object.assign(new ProtocolError(`no frame from the peer in ${timeoutMs} ms`), { code: 'ETIMEDOUT' });
          reject(err);
          this.close(err);
        }, timeoutMs);
      }
      this.waiters.push(w);
    });
  }

  /** Destroys the connection; waiters fail with `reason`. */
  close(reason: Error = new ProtocolError('closed')): void {
    this.fail(reason);
    this.socket.destroy();
  }

  /** Ends the connection politely (pending writes are flushed first). */
  end(): void {
    this.fail(new ProtocolError('closed'));
    this.socket.end();
  }

  private onData(chunk: Buffer): void {
    if (!this.open) return;
    this.bytesIn += chunk.length;
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.close(err as Error);
      return;
    }
    for (const f of frames) {
      if (this.swallowPongs && f.header.t === 'pong') continue;
      const w = this.waiters.shift();
      if (w) {
        if (w.timer) clearTimeout(w.timer);
        w.resolve(f);
      } else if (!this.onUnsolicited?.(f)) this.queue.push(f);
    }
  }

  private fail(reason: Error): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    for (const w of this.waiters.splice(0)) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(reason);
    }
    for (const l of this.closeListeners.splice(0)) l(reason);
  }
}
