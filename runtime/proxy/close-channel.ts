import type { Logger } from '../shared/log';
import type { FrameChannel } from '../shared/proxy-protocol';

/**
 * How a proxy ends an authenticated channel whose loop stopped: an idle
 * timeout or the peer's close is routine, a silent peer is warned about; anything else is a protocol error,
 * answered with an error frame before the close.
 */
export function endChannel(channel: FrameChannel, err: unknown, log: Logger, what: { idle: string; closed: string; protocol: string }, closedLevel: 'info' | 'debug' = 'info'): void {
  const e = err as Error & { code?: string };
  if (e.code === 'ETIMEDOUT') log.info(what.idle);
  // Its host died or its network went: nothing to answer, the link is gone.
  else if (e.code === 'ELINKDEAD') log.warn({ err: e.message }, 'proxy: MTA silent past its ping interval, link taken for dead and closed');
  else if (e.message === 'connection closed by the peer') log[closedLevel](what.closed);
  else {
    log.warn({ err: e.message }, what.protocol);
    if (channel.open) {
      try {
        channel.send({ t: 'error', code: 'protocol', message: e.message });
        channel.end();
        setTimeout(() => channel.socket.destroy(), 1000).unref();
      } catch {
        // gone already
      }
    }
  }
}
