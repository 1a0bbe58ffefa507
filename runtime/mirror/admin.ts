// The mirror's admin port: the open endpoints every daemon has (/healthz;
// /readyz 200 on the primary and 503 on the secondary, so an NLB or the `lb`
// only sends mail to the primary; /metrics for Prometheus), GET /status
// (what `volley mirror status` prints), POST /promote[?force=1] (what
// `volley mirror promote` calls) and POST /switchover[?timeout=60s], the
// latter two only from loopback and never from a web page: promotion is an
// operator's act on the node itself.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Gauge, Registry } from 'prom-client';
import { adminHttpServer, closeHttpServer, pathOf, sendJson, serveOpenEndpoint } from '../shared/admin-http';
import { errorCode } from '../shared/errors';
import { listen } from '../shared/listen';
import { parseDuration } from '../shared/units';
import type { MirrorDaemon } from './daemon';

export function mirrorMetrics(daemon: MirrorDaemon): Registry {
  const registry = new Registry();
  const gauge = (name: string, help: string, value: () => number): void => {
    new Gauge({ name, help, registers: [registry], collect() { this.set(value()); } });
  };
  gauge('volley_mirror_primary', '1 when this node is the primary of its pair, 0 when secondary', () => (daemon.state.role === 'primary' ? 1 : 0));
  gauge('volley_mirror_epoch', 'the epoch this node holds', () => daemon.state.epoch);
  gauge('volley_mirror_peer_connected', '1 while the replication link is up', () => (daemon.status().peer_connected ? 1 : 0));
  gauge('volley_mirror_caught_up', '1 when the secondary holds everything the primary had at their last exchange', () => (daemon.status().caught_up ? 1 : 0));
  gauge('volley_mirror_lag_bytes', 'bytes the primary holds that the secondary does not hold durably yet', () => daemon.status().lag_bytes);
  gauge('volley_mirror_lag_seconds', 'age of the oldest change the secondary does not hold durably yet', () => daemon.status().lag_seconds);
  gauge('volley_mirror_full_resyncs', 'files copied whole in this session (diverged or unknown history)', () => daemon.status().full_resyncs);
  gauge('volley_mirror_refused_files', 'files too large for one frame of the link: not replicated (each is logged; alert on it)', () => daemon.status().refused_files);
  gauge('volley_mirror_bytes_sent', 'file bytes sent to the secondary in this session', () => daemon.status().bytes_sent);
  gauge('volley_mirror_bytes_received', 'file bytes received from the primary since start', () => daemon.status().bytes_received);
  gauge('volley_mirror_batches', 'replication batches made durable since start', () => daemon.status().batches);
  gauge('volley_mirror_demotions', 'times this node stepped down (a higher epoch, or a lease it could not renew)', () => daemon.status().demotions);
  if (daemon.lease) {
    const lease = daemon.lease;
    gauge('volley_mirror_lease_held', '1 while this node holds the arbiter lease (as far as it can be sure)', () => (lease.status().held_until !== undefined ? 1 : 0));
    gauge('volley_mirror_lease_expires_seconds', 'seconds until the arbiter lease last seen expires (negative: expired; NaN: never read)', () => lease.expiresInSeconds() ?? NaN);
    gauge('volley_mirror_arbiter_errors', 'arbiter reads or writes that failed since start', () => lease.errors);
  }
  gauge('volley_mirror_quarantine_pending', '1 while this node may hold mail its primary never received and its catch-up has not filed it yet', () => (daemon.status().quarantine.pending ? 1 : 0));
  gauge('volley_mirror_quarantined_messages', 'messages in this node\'s quarantine reports: accepted here, never received by the primary, not delivered', () => daemon.status().quarantine.messages);
  daemon.sync?.register(registry);
  return registry;
}

function loopback(req: IncomingMessage): boolean {
  const a = req.socket.remoteAddress ?? '';
  return a === '::1' || a.startsWith('127.') || a.startsWith('::ffff:127.');
}

/**
 * Whether the operator's own act is refused: from off the node, or sent by a
 * web browser. Loopback is the only credential here, and a page open in a
 * browser on the node (or one whose name was rebound to 127.0.0.1) may POST
 * to loopback with no preflight; browsers name its origin on every POST, the
 * CLI (`volley mirror`), curl and Node's fetch send no Origin.
 */
function refusal(req: IncomingMessage, what: string): { error: string; code: string } | undefined {
  if (!loopback(req)) return { error: `${what} is only taken from this node itself (loopback)`, code: 'EFORBIDDEN' };
  if (req.headers.origin !== undefined) return { error: `${what} is not taken from a web page (the request carries Origin: ${req.headers.origin.slice(0, 100)}): run \`volley mirror\` on the node`, code: 'EFORBIDDEN' };
  return undefined;
}

export async function startMirrorAdmin(daemon: MirrorDaemon): Promise<{ server: Server; port: number; close: () => Promise<void> }> {
  const registry = mirrorMetrics(daemon);
  const server = adminHttpServer(async (req: IncomingMessage, res: ServerResponse) => {
    const served = await serveOpenEndpoint(req, res, {
      ready: () => (daemon.state.role === 'primary' ? { ok: true, reasons: [] } : { ok: false, reasons: [`this node is the secondary of its pair (epoch ${daemon.state.epoch}): mail goes to the primary`] }),
      metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    });
    if (served) return;
    const path = pathOf(req);
    if (req.method === 'GET' && path === '/status') return sendJson(res, 200, daemon.status());
    if (req.method === 'POST' && path === '/promote') {
      const refused = refusal(req, 'promotion');
      if (refused) return sendJson(res, 403, refused);
      const force = new URL(req.url ?? '/', 'http://admin').searchParams.get('force') === '1';
      try {
        const s = await daemon.promote(force);
        return sendJson(res, 200, { role: s.role, epoch: s.epoch });
      } catch (err) {
        return sendJson(res, 409, { error: (err as Error).message, code: errorCode(err) });
      }
    }
    if (req.method === 'POST' && path === '/switchover') {
      const refused = refusal(req, 'a switchover');
      if (refused) return sendJson(res, 403, refused);
      let timeoutMs: number;
      try {
        timeoutMs = parseDuration(new URL(req.url ?? '/', 'http://admin').searchParams.get('timeout') ?? '60s');
      } catch (err) {
        return sendJson(res, 400, { error: (err as Error).message, code: 'EBADTIMEOUT' });
      }
      try {
        return sendJson(res, 200, await daemon.switchover(timeoutMs));
      } catch (err) {
        return sendJson(res, 409, { error: (err as Error).message, code: errorCode(err) });
      }
    }
    sendJson(res, 404, { error: `no endpoint ${req.method} ${path}: this address serves /healthz, /readyz, /metrics, /status, POST /promote and POST /switchover` });
  });
  const port = await listen(server, daemon.config.adminListen.port, daemon.config.adminListen.address);
  return { server, port, close: () => closeHttpServer(server) };
}
