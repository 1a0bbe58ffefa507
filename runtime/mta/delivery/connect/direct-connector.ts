import type { Connector, OutboundSession, Source, Target, TlsRequirement } from '../../../shared/smtp/connector';
import { RFC5321_CLIENT_TIMEOUTS, SmtpClientSession, type ClientTimeouts, type OpenOptions } from '../../../shared/smtp/client';

/** Opens SMTP sessions straight from this host, bound to the VMTA's sending IP. */
export class DirectConnector implements Connector {
  constructor(
    private readonly timeouts: ClientTimeouts = RFC5321_CLIENT_TIMEOUTS,
    /** The trust store of `verify` sessions (delivery.tls_ca_file, mx-trust.ts); node's store when absent. */
    private readonly trust?: OpenOptions['secureContext'],
  ) {}

  open(target: Target, source: Source, tls: TlsRequirement): Promise<OutboundSession> {
    return SmtpClientSession.open(target, source, tls, this.timeouts, this.trust ? { secureContext: this.trust } : {});
  }
}
