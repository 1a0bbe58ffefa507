// What a route means for one delivery: the MX addresses to try, in order
// (a domain with none is records/outcomes.ts's NoRoute). A pure function of
// the router's answer; no I/O, no state.
import type { Target } from '../../../shared/smtp/connector';
import type { Route } from './router';

export type HostsRoute = Extract<Route, { kind: 'hosts' }>;

/** The addresses a delivery tries, MX hosts in preference order, at most `limit` of them (0: all; Postfix's smtp_mx_address_limit). */
export function mxTargets(route: HostsRoute, limit: number): Target[] {
  const all = route.hosts.flatMap((h) => h.ips.map((ip) => ({ host: h.host, ip, port: h.port })));
  return limit > 0 ? all.slice(0, limit) : all;
}
