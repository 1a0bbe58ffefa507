// Liveness of an MTA<->proxy link. A peer that dies without closing (a crash
// of its host, a pulled cable, a SIGSTOP) leaves the TCP connection open on
// our side for minutes (until the kernel's retransmissions give up, ~15 min
// with data pending, never while idle): everything waiting on that link
// stalls. keepAlive watches the link instead: no byte from the peer for
// `misses` intervals in a row and the link is closed with LinkDeadError, so
// its waiters fail at once and the owner redials.
//
// The bounds (defaults):
//   The MTA pings every LINK_PING_MS = 5 s and closes after LINK_MISSES = 2
//   silent intervals. A live proxy answers each ping within a round trip, so
//   at a tick the last byte heard is about 5 s old: 5 s of margin for the
//   round trip and event-loop stalls before a live link could be taken for
//   dead. A dead proxy's last byte came at t0; the first tick where 2 whole
//   intervals passed silent is in [t0 + 10 s, t0 + 15 s): a dead proxy is
//   noticed 10 to 15 s after it stopped answering.
//   A proxy answers pings at once, even mid-connect or mid-transaction, but
//   a pong queues behind what the MTA sends before it (a 30 MB message on a
//   slow link takes longer than 10 s): so to an MTA that announced its ping
//   interval in its hello the proxy also sends an unasked pong each interval
//   (a beacon), which nothing of ours queues behind. An MTA of an earlier
//   release announces nothing and gets none (it would take a pong arriving
//   while it waits for an answer as that answer). The proxy watches such an
//   MTA for PROXY_SIDE_MISSES = 3 silent intervals: [15 s, 20 s) after a
//   dead MTA's last byte, one interval more than the MTA allows itself
//   because the proxy's ticks and the MTA's pings are not in phase.
//   A proxy of an earlier release neither beacons nor answers pings while
//   busy: the MTA then enforces the bound on control links only (answered
//   at once by every release), and merely pings its delivery links.
import { VolleyError } from '../errors';
import type { FrameChannel } from './channel';

export const LINK_PING_MS = 5_000;
export const LINK_MISSES = 2;
export const PROXY_SIDE_MISSES = 3;
/** The shortest ping interval a proxy takes from a hello; shorter ones are raised to it. */
export const MIN_PING_MS = 100;

/** The peer sent nothing for too long: the link is taken for dead and closed. */
export class LinkDeadError extends VolleyError {
  constructor(message: string) {
    super('ELINKDEAD', message);
    this.name = 'LinkDeadError';
  }
}

export interface KeepAliveOptions {
  intervalMs?: number;
  misses?: number;
  /** Send a ping each interval (the MTA's side). */
  ping?: boolean;
  /** Send an unasked pong each interval (the proxy's side, to MTAs that announced their interval). */
  beacon?: boolean;
  /** Close after `misses` silent intervals (default true); false: ping only. */
  enforce?: boolean;
}

/** Pings and/or watches `channel` until it closes (the timer goes with it). Any byte from the peer is a sign of life. */
export function keepAlive(channel: FrameChannel, options: KeepAliveOptions = {}): void {
  const intervalMs = options.intervalMs ?? LINK_PING_MS;
  const misses = options.misses ?? LINK_MISSES;
  const ping = options.ping ?? true;
  const enforce = options.enforce ?? true;
  channel.swallowPongs = ping;
  let heard = channel.bytesIn;
  let silent = 0;
  const timer = setInterval(() => {
    if (!channel.open) return clearInterval(timer);
    if (channel.bytesIn !== heard) silent = 0;
    else if (++silent >= misses && enforce) {
      clearInterval(timer);
      channel.close(new LinkDeadError(`nothing from the peer in ${misses} intervals of ${intervalMs} ms: link taken for dead`));
      return;
    }
    heard = channel.bytesIn;
    if (ping) channel.send({ t: 'ping' });
    if (options.beacon) channel.send({ t: 'pong' });
  }, intervalMs);
  timer.unref();
  channel.onClose(() => clearInterval(timer));
}
