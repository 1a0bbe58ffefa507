import type { Logger } from '../shared/log';
import { endChannel } from './close-channel';
import { ProtocolError, type FrameChannel } from '../shared/proxy-protocol';
import { MAX_KEY_LENGTH, type Acquire, type ControlLimits, type Grant } from '../shared/proxy-protocol/control-messages';
import type { ClusterLimits } from '../shared/throttle/cluster-throttles';
import type { ThrottleAuthority } from './throttle-authority';

let nextConnection = 0;

/**
 * Serves one MTA's control connection (after the handshake, channel
 * "control"): answers acquire with grant from the proxy node's throttle
 * authority (in-process, or the primary's over IPC),
 * takes releases, and when the connection ends for any reason forgets the
 * MTA, freeing the connection permits it held. Each connection is its own
 * MTA to the throttles, so a reconnect never inherits stale permits.
 */
export async function serveControl(channel: FrameChannel, throttles: ThrottleAuthority, options: { mta?: string; idleTimeoutMs: number; log: Logger }): Promise<void> {
  const id = `${options.mta ?? 'mta'}#${++nextConnection}`;
  const log = options.log;
  log.info('proxy: control channel open');
  try {
    for (;;) {
      const frame = await channel.next(options.idleTimeoutMs);
      const h = frame.header;
      switch (h.t) {
        case 'ping':
          channel.send({ t: 'pong' });
          break;
        case 'acquire': {
          const req = checkAcquire(h);
          const limits = clusterLimits(req.limits);
          let grant: Grant;
          if (req.kind === 'connection') {
            grant = { t: 'grant', id: req.id, ok: await throttles.tryConnection(id, req.key, limits, req.reclaim === true) };
          } else {
            const r = await throttles.tryMessage(id, req.key, limits);
            grant = r.ok ? { t: 'grant', id: req.id, ok: true } : { t: 'grant', id: req.id, ok: false, wait_ms: r.waitMs };
          }
          channel.send(grant);
          break;
        }
        case 'release':
          if (typeof h.key !== 'string') throw new ProtocolError('release without a key');
          throttles.releaseConnection(id, h.key);
          break;
        default:
          throw new ProtocolError(`unexpected frame type on the control channel ${JSON.stringify(h.t).slice(0, 40)}`);
      }
    }
  } catch (err) {
    endChannel(channel, err, log, { idle: 'proxy: control channel idle, closed', closed: 'proxy: MTA closed the control channel', protocol: 'proxy: control protocol error, connection closed' });
    if (channel.open) channel.close();
  } finally {
    throttles.forget(id);
  }
}

function checkAcquire(h: Record<string, unknown>): Acquire {
  const a = h as Partial<Acquire>;
  if (!Number.isSafeInteger(a.id)) throw new ProtocolError('acquire without an integer id');
  if (a.kind !== 'connection' && a.kind !== 'message') throw new ProtocolError('acquire kind is not connection or message');
  if (typeof a.key !== 'string' || a.key.length === 0 || a.key.length > MAX_KEY_LENGTH) throw new ProtocolError('acquire without a key');
  const l = a.limits as Partial<ControlLimits> | undefined;
  if (typeof l !== 'object' || l === null) throw new ProtocolError('acquire without limits');
  if (typeof l.max_connections !== 'number' || !Number.isFinite(l.max_connections) || l.max_connections < 0) throw new ProtocolError('limits.max_connections is not a number >= 0');
  if (l.max_messages_per_hour !== null && (typeof l.max_messages_per_hour !== 'number' || !Number.isFinite(l.max_messages_per_hour) || l.max_messages_per_hour < 0)) {
    throw new ProtocolError('limits.max_messages_per_hour is not a number >= 0 or null');
  }
  return a as Acquire;
}

function clusterLimits(l: ControlLimits): ClusterLimits {
  return { maxConnections: l.max_connections, maxMessagesPerHour: l.max_messages_per_hour };
}
