// The MTA↔proxy topology written out as configs: each proxy's own YAML and
// the MTAs' `proxies:` section, from one list of proxies. The local fleet and
// the CDK stacks both use it, so the two sides of a link are always written
// from the same facts (address, sending IPs, secret, certificate pin) and
// never by hand in two places.
import { stringify } from 'yaml';

/** One proxy as both sides must see it. */
export interface ProxyNode {
  readonly name: string;
  /** The address the proxy listens on and the MTAs dial. */
  readonly host: string;
  readonly port: number;
  readonly sendingIps: readonly string[];
}

/** Where one proxy finds its TLS pair and the shared secret, and whom it admits. */
export interface ProxyFiles {
  readonly cert: string;
  readonly key: string;
  readonly secretFile: string;
  /** Source CIDRs admitted on top of the HMAC; empty admits any. */
  readonly allowFrom?: readonly string[];
  /** The proxy's admin port (/healthz, /readyz, /metrics); the proxy's default when absent. */
  readonly adminListen?: string;
}

/** How the MTAs check a proxy's certificate: its SHA-256 fingerprint, or a CA file. */
export type ProxyPin = { readonly fingerprint: string } | { readonly caFile: string };

/** A proxy's own config file (runtime/proxy/config.ts reads it). */
export function proxyConfigYaml(node: ProxyNode, files: ProxyFiles): string {
  const doc: Record<string, unknown> = {
    name: node.name,
    listen: `${node.host}:${node.port}`,
    tls: { cert: files.cert, key: files.key },
    secret_file: files.secretFile,
  };
  if (files.adminListen) doc.admin_listen = files.adminListen;
  if (files.allowFrom && files.allowFrom.length > 0) doc.allow_from = [...files.allowFrom];
  doc.sending_ips = [...node.sendingIps];
  return stringify(doc);
}

/** The MTA config's `proxies:` section (runtime/shared/config/schema.ts) for these proxies. */
export function mtaProxiesSection(nodes: readonly ProxyNode[], secretFile: string, pin: (node: ProxyNode) => ProxyPin): Record<string, unknown> {
  return {
    secret_file: secretFile,
    servers: nodes.map((node) => {
      const p = pin(node);
      return {
        name: node.name,
        address: `${node.host}:${node.port}`,
        ...('fingerprint' in p ? { fingerprint: p.fingerprint } : { ca_file: p.caFile }),
        sending_ips: [...node.sendingIps],
      };
    }),
  };
}
