import { readFileSync } from 'node:fs';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { HaproxyFrontend, ProxiesConfig } from '../../../shared/config/types';
import { loadSecret } from '../../../shared/proxy-protocol/handshake';
import type { ProxyEndpoint } from '../../../shared/proxy-protocol/client';
import type { ClientTimeouts } from '../../../shared/smtp/client';
import type { Connector, OutboundSession, Source, Target, TlsRequirement } from '../../../shared/smtp/connector';
import { DirectConnector } from './direct-connector';
import { HaproxyConnector } from './haproxy-connector';
import { ProxyConnector } from './proxy-connector';

/**
 * Picks the path for each session by its sending IP: through the Volley
 * proxies that hold it (in the order the config lists them), through its
 * HAProxy frontend, or straight from this host.
 */
export class RoutingConnector implements Connector {
  private readonly direct: DirectConnector;
  private readonly proxy?: ProxyConnector;
  private readonly byIp = new Map<string, ProxyEndpoint[]>();
  private readonly haproxy?: HaproxyConnector;

  /** `trust`: the CAs of `verify` sessions opened here (delivery.tls_ca_file); sessions through a proxy use the proxy's own (mx_tls_ca_file). */
  constructor(options: { proxies?: ProxiesConfig; haproxy?: { frontends: HaproxyFrontend[] }; timeouts: ClientTimeouts; logger: Logger; name: string; trust?: SecureContext }) {
    this.direct = new DirectConnector(options.timeouts, options.trust);
    if (options.haproxy && options.haproxy.frontends.length > 0) this.haproxy = new HaproxyConnector(options.haproxy.frontends, options.timeouts, options.trust);
    if (!options.proxies || options.proxies.servers.length === 0) return;
    for (const s of options.proxies.servers) {
      const endpoint: ProxyEndpoint = { host: s.host, port: s.port, name: s.name, fingerprint: s.fingerprint, ca: s.caFile ? readFileSync(s.caFile) : undefined };
      for (const ip of s.sendingIps) this.byIp.set(ip, [...(this.byIp.get(ip) ?? []), endpoint]);
    }
    this.proxy = new ProxyConnector({
      proxies: (ip) => this.byIp.get(ip),
      secret: loadSecret({ file: options.proxies.secretFile, env: 'VOLLEY_PROXY_SECRET' }),
      timeouts: options.timeouts,
      name: options.name,
      logger: options.logger,
    });
  }

  open(target: Target, source: Source, tls: TlsRequirement): Promise<OutboundSession> {
    if (this.proxy && source.ip && this.byIp.has(source.ip)) return this.proxy.open(target, source, tls);
    if (this.haproxy && source.ip && this.haproxy.frontendFor(source.ip)) return this.haproxy.open(target, source, tls);
    return this.direct.open(target, source, tls);
  }
}
