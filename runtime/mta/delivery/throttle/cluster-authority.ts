import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { VolleyConfig } from '../../../shared/config/types';
import type { ProxyEndpoint } from '../../../shared/proxy-protocol/client';
import { loadSecret } from '../../../shared/proxy-protocol/handshake';
import { ProxyAuthority } from './proxy-authority';
import type { ThrottleAuthority } from './throttle-authority';

/**
 * With proxies configured, throttle permits for the sending IPs they hold come
 * from the proxy holding each IP (cluster-wide); everything else, and backoff
 * pauses, from `node`. A key's source is a VMTA name or a sending IP.
 */
export function clusterThrottleAuthority(config: VolleyConfig, node: ThrottleAuthority, name: string, logger: Logger): ProxyAuthority | undefined {
  if (!config.proxies || config.proxies.servers.length === 0) return undefined;
  const byIp = new Map<string, ProxyEndpoint>();
  for (const s of config.proxies.servers) {
    for (const ip of s.sendingIps) {
      // The first listed server for an IP, as the routing connector picks it.
      if (!byIp.has(ip)) byIp.set(ip, { host: s.host, port: s.port, name: s.name, fingerprint: s.fingerprint, ca: s.caFile ? readFileSync(s.caFile) : undefined });
    }
  }
  const vmtaIp = new Map(config.vmtas.map((v) => [v.name, v.ip]));
  return new ProxyAuthority({
    proxyFor: (key) => byIp.get(vmtaIp.get(key.source) ?? key.source),
    fallback: node,
    secret: loadSecret({ file: config.proxies.secretFile, env: 'VOLLEY_PROXY_SECRET' }),
    name,
    logger,
  });
}
