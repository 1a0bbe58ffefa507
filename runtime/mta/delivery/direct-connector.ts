import type { Connector, OutboundSession, Source, Target, TlsPolicy } from '../../shared/smtp/connector';
import { RFC5321_CLIENT_TIMEOUTS, SmtpClientSession, type ClientTimeouts } from '../../shared/smtp/client';

/** Opens SMTP sessions straight from this host, bound to the VMTA's sending IP. */
export class DirectConnector implements Connector {
  constructor(private readonly timeouts: ClientTimeouts = RFC5321_CLIENT_TIMEOUTS) {}

  open(target: Target, source: Source, tls: TlsPolicy): Promise<OutboundSession> {
    return SmtpClientSession.open(target, source, tls, this.timeouts);
  }
}
