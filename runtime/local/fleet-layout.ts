// The local fleet's loopback ports: the README's fixed ones by default, laid
// out from a base (`--port-base N`), or picked free by the kernel
// (`--port-base auto`), so a test or the bench can run a fleet beside a
// developer's `volley local` without colliding with it.
import { createServer, type Server } from 'node:net';
import { VolleyError } from '../shared/errors';

export interface FleetLayout {
  /** The lb connects to the MTAs from `source`, the only address they read a PROXY header from. */
  lb: { smtp: number; http: number; admin: number; source: string };
  /** drain: each MTA's drain endpoint (drain.listen), what `volley drain` on the other one sends to. */
  mtas: { name: string; smtp: number; http: number; admin: number; drain: number }[];
  /** admin: each proxy's admin_listen (/healthz /readyz /metrics); two on one host cannot share the default 7626. */
  proxies: { name: string; port: number; admin: number; ips: string[] }[];
  /** The embedded sink MX (or where the fleet delivers with --no-sink). */
  sink: number;
}

/** The fixed layout the README documents (what `npm start` uses). */
export const DEFAULT_LAYOUT: FleetLayout = {
  lb: { smtp: 2525, http: 8080, admin: 8026, source: '127.0.0.9' },
  mtas: [
    { name: 'mta-1', smtp: 2601, http: 8081, admin: 8027, drain: 8443 },
    { name: 'mta-2', smtp: 2602, http: 8082, admin: 8028, drain: 8444 },
  ],
  proxies: [
    { name: 'proxy-a', port: 7025, admin: 7027, ips: ['127.0.0.2', '127.0.0.3'] },
    { name: 'proxy-b', port: 7026, admin: 7028, ips: ['127.0.0.4', '127.0.0.5'] },
  ],
  sink: 2526,
};

/** How many ports a layout uses: lb 3, each MTA 4, each proxy 2, the sink 1. */
export const PORTS_USED = 3 + DEFAULT_LAYOUT.mtas.length * 4 + DEFAULT_LAYOUT.proxies.length * 2 + 1;

/** The default layout with its ports replaced, in order, by `ports` (lb, MTAs, proxies, sink). */
function withPorts(ports: number[]): FleetLayout {
  const next = (): number => ports.shift() as number;
  return {
    lb: { ...DEFAULT_LAYOUT.lb, smtp: next(), http: next(), admin: next() },
    mtas: DEFAULT_LAYOUT.mtas.map((m) => ({ name: m.name, smtp: next(), http: next(), admin: next(), drain: next() })),
    proxies: DEFAULT_LAYOUT.proxies.map((p) => ({ name: p.name, port: next(), admin: next(), ips: p.ips })),
    sink: next(),
  };
}

/**
 * `--port-base`: undefined keeps the README's ports; a number N lays out
 * N, N+1, … (lb SMTP, HTTP, admin; each MTA's SMTP, HTTP, admin, drain; each
 * proxy's port and admin; the sink); `auto` takes ports the kernel reports free.
 */
export async function fleetLayout(portBase: string | undefined): Promise<FleetLayout> {
  if (portBase === undefined) return DEFAULT_LAYOUT;
  if (portBase === 'auto') return withPorts(await freePorts(PORTS_USED));
  const base = /^\d{1,5}$/.test(portBase) ? Number(portBase) : NaN;
  if (!(base >= 1 && base + PORTS_USED - 1 <= 65535)) {
    throw new VolleyError('EBADFLAG', `--port-base "${portBase}" is not "auto" or a port from 1 to ${65535 - PORTS_USED + 1} (the fleet uses ${PORTS_USED} ports from it)`);
  }
  return withPorts(Array.from({ length: PORTS_USED }, (_, i) => base + i));
}

/** `count` distinct free loopback ports: all held open at once, so none is reported twice, then released. */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => resolve());
      });
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}
