// When a proxy is ready to carry mail: its MTA listener is bound (so its TLS
// pair and secret were loaded), and every configured sending IP can be bound
// on this host (a missing address would fail deliveries, not the proxy).
import { createServer, isIP } from 'node:net';
import type { Readiness } from '../shared/admin-http';
import { listen } from '../shared/listen';
import type { ProxyServer } from './server';

/** Whether a local address can be bound; injectable so tests can model an address not yet up. */
export type BindProbe = (ip: string) => Promise<boolean>;

/** Binds a TCP socket to the address on an ephemeral port and closes it. */
export const bindProbe: BindProbe = async (ip) => {
  if (isIP(ip) === 0) return false; // a name would be looked up; the config holds addresses only
  const server = createServer();
  try {
    await listen(server, 0, ip);
    return true;
  } catch {
    return false;
  } finally {
    if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
};

/** What readiness looks at: a ProxyServer, or the primary's view of its workers. */
export interface ReadinessView {
  draining: boolean;
  listening: boolean;
  settings: Pick<ProxyServer['settings'], 'tls' | 'secret' | 'sendingIps'>;
}

export async function proxyReadiness(server: ReadinessView, probe: BindProbe = bindProbe): Promise<Readiness> {
  const reasons: string[] = [];
  const { tls, secret, sendingIps } = server.settings;
  if (server.draining) reasons.push('the proxy is stopping');
  else if (!server.listening) reasons.push('the MTA listener is not bound yet');
  if (tls.key.length === 0 || tls.cert.length === 0) reasons.push('no TLS pair loaded');
  if (secret.length < 32) reasons.push('no secret loaded');
  const bindable = await Promise.all(sendingIps.map((ip) => probe(ip)));
  sendingIps.forEach((ip, i) => {
    if (!bindable[i]) reasons.push(`sending IP ${ip} cannot be bound on this host`);
  });
  return { ok: reasons.length === 0, reasons };
}
