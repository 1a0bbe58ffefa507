// Connection set-up for one delivery: the first MX address, in order, that
// completes the handshake under the TLS the domain's policy asks of it.
// Owns the MX failover walk; it takes no throttle permit and records no
// outcome (the caller does both with what it throws or returns).
import { ConnectError, type Connector, type OutboundSession, type Source, type Target, type TlsOutcome } from '../../../shared/smtp/connector';
import type { HostsRoute } from '../routing/mx-targets';
import type { TlsPolicyResolver } from '../tls-policy/resolver';
import type { SessionResults } from '../tls-policy/session-results';

export interface SessionOpener {
  connector: Connector;
  tlsPolicy: TlsPolicyResolver;
  tlsResults: SessionResults;
}

/**
 * A session with the first of `targets` from `from` on that completes the
 * handshake. Whatever stops one (no connection, a 4xx/5xx greeting, EHLO
 * and HELO refused, TLS) moves on to the next address, as Postfix does:
 * one MX that will not talk says nothing about the others. An MX host the
 * domain's TLS policy forbids (MTA-STS enforce, not in its patterns) is
 * skipped without a connection. Throws the last failure when none is left.
 */
export async function openSession(
  via: SessionOpener,
  route: HostsRoute,
  targets: Target[],
  from: number,
  source: Source,
  domain: string,
): Promise<{ session: OutboundSession; index: number }> {
  // Per MX host: what TLS the session must reach, or that the domain's policy forbids the host (cached in the resolver).
  const decisions = await via.tlsPolicy.forHosts(domain, route.hosts, route.source);
  const byHost = new Map(route.hosts.map((h, i) => [h.host, decisions[i]]));
  const refused = new Set<string>();
  let last: unknown;
  for (let index = from; index < targets.length; index++) {
    const target = targets[index];
    const tls = byHost.get(target.host);
    if (!tls) continue;
    if (!tls.use) {
      if (!refused.has(target.host)) via.tlsResults.refused(domain, tls, source.ip);
      refused.add(target.host);
      last = new ConnectError('tls-required', tls.reason, { code: 451, enhanced: '4.7.5', text: `TLS policy: ${tls.reason}` }, {
        policy: tls.report.type === 'tlsa' ? 'dane' : 'mta-sts',
        verified: false,
        failure: tls.resultType,
      } satisfies TlsOutcome);
      continue;
    }
    try {
      const session = await via.connector.open(target, source, tls.requirement);
      via.tlsResults.opened(domain, tls, session, source.ip);
      return { session, index };
    } catch (err) {
      last = err;
      via.tlsResults.failed(domain, tls, target.ip, err, source.ip);
    }
  }
  throw last ?? new ConnectError('error', 'no host to connect to');
}
