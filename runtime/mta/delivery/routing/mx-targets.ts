// What a route means for one delivery: the MX addresses to try, in order,
// and the reply recorded for a domain that has none. Pure functions of the
// router's answer; no I/O, no state.
import type { SmtpReply } from '../../../shared/smtp/reply';
import type { Target } from '../../../shared/smtp/connector';
import type { Route } from './router';

export type HostsRoute = Extract<Route, { kind: 'hosts' }>;

/** The addresses a delivery tries, MX hosts in preference order, at most `limit` of them (0: all; Postfix's smtp_mx_address_limit). */
export function mxTargets(route: HostsRoute, limit: number): Target[] {
  const all = route.hosts.flatMap((h) => h.ips.map((ip) => ({ host: h.host, ip, port: h.port })));
  return limit > 0 ? all.slice(0, limit) : all;
}

/** The reply recorded for the mail of a domain with no host to deliver to. */
export function routeReply(route: Route): SmtpReply {
  if (route.kind === 'null-mx') return { code: 556, enhanced: '5.1.10', text: 'recipient domain does not accept mail (null MX)' };
  if (route.kind === 'no-route') return route.temporary ? { code: 451, enhanced: '4.4.3', text: route.reason } : { code: 550, enhanced: '5.1.2', text: route.reason };
  return { code: 0, text: '' };
}
