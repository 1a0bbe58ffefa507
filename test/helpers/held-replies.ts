import type { Socket } from 'node:net';

/**
 * Replies to a client, each due at a time, kept in order: once one is held,
 * all after it wait too. Those due together leave in one write, as a server
 * writes pipelined replies: a write per line would split them into packets a
 * real MX does not send, and cost both sides a system call each. The bench's
 * held sink and the hold proxy in front of smtp-sink both hold end-of-data
 * replies this way.
 */
export class HeldReplies {
  private queue: { at: number; text: string; counts: boolean; end: boolean }[] = [];
  private timer: NodeJS.Timeout | undefined;

  /** `onWritten` hears how many replies marked `counts` a write carried. */
  constructor(
    private readonly socket: Socket,
    private readonly onWritten: (counted: number) => void = () => undefined,
  ) {}

  /** Queues `text` to leave at `at` (ms since the epoch); `end` closes the socket after it. */
  push(at: number, text: string, options: { counts?: boolean; end?: boolean } = {}): void {
    this.queue.push({ at, text, counts: options.counts === true, end: options.end === true });
  }

  /** Writes what is due now, unless a timer for the oldest is already set; call after queuing a read's replies. */
  release(): void {
    if (this.timer === undefined && this.queue.length > 0) this.flush();
  }

  /** The socket is gone: nothing more leaves. */
  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue = [];
  }

  private flush(): void {
    this.timer = undefined;
    const now = Date.now();
    let out = '';
    let counted = 0;
    let end = false;
    while (this.queue.length > 0 && this.queue[0].at <= now) {
      const r = this.queue.shift()!;
      out += r.text;
      if (r.counts) counted++;
      end ||= r.end;
    }
    if (!this.socket.destroyed && (out || end)) {
      if (end) this.socket.end(out, 'latin1');
      else this.socket.write(out, 'latin1');
      // Counted once written: a reply to a client that has gone was never heard.
      if (counted > 0) this.onWritten(counted);
    }
    if (this.queue.length > 0) this.timer = setTimeout(() => this.flush(), this.queue[0].at - now);
  }
}
