// Why mail was not delivered, as one hierarchy rooted in VolleyError: each
// kind carries the SMTP reply recorded for its recipients, whether that
// reply defers or fails them, and the attempt log's error_kind. The engine
// turns what went wrong into one of these; the recorder writes it. Nothing
// here sends or writes.
import { ConnectError, type TlsOutcome } from '../../../shared/smtp/connector';
import type { SmtpReply } from '../../../shared/smtp/reply';
import { VolleyError, errorCode } from '../../../shared/errors';
import type { Route } from '../routing/router';
import { linkErrorKind } from './attempt-recorder';

export type FailedOutcome = 'deferred' | 'failed';

export abstract class DeliveryFailure extends VolleyError {
  constructor(
    code: string,
    message: string,
    readonly reply: SmtpReply,
    readonly outcome: FailedOutcome,
    /** The attempt log's error_kind (none for a plain lost connection or an unreadable record). */
    readonly errorKind: string | undefined,
    /** What TLS was reached, when the TLS requirement is why. */
    readonly tls?: TlsOutcome,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** The domain has no host to deliver to (a null MX, or no route: temporary or for good). */
export class NoRoute extends DeliveryFailure {
  constructor(route: Exclude<Route, { kind: 'hosts' }>) {
    const reply: SmtpReply =
      route.kind === 'null-mx'
        ? { code: 556, enhanced: '5.1.10', text: 'recipient domain does not accept mail (null MX)' }
        : route.temporary
          ? { code: 451, enhanced: '4.4.3', text: route.reason }
          : { code: 550, enhanced: '5.1.2', text: route.reason };
    super('ENOROUTE', reply.text, reply, reply.code >= 500 ? 'failed' : 'deferred', 'routing');
  }
}

/**
 * No MX address would talk (no connection, a 4xx/5xx greeting or EHLO, TLS):
 * a fault of the site, not an answer about this mail, so it is retried
 * (Postfix's smtp_skip_5xx_greeting) whatever the reply's class.
 */
export class SessionNotOpened extends DeliveryFailure {
  constructor(err: unknown) {
    const ce = err instanceof ConnectError ? err : new ConnectError('error', (err as Error).message);
    const reply = ce.reply ?? { code: 451, enhanced: '4.4.1', text: `${ce.kind}: ${ce.message}` };
    super('ESESSION', ce.message, reply, 'deferred', linkErrorKind(err) ?? ce.kind, ce.tls, { cause: err });
  }
}

/** The transaction ended without a reply for its recipients (the connection or the proxy link was lost). */
export class TransactionLost extends DeliveryFailure {
  constructor(err: unknown) {
    const text = (err as Error).message;
    super('ELOST', text, { code: 451, enhanced: '4.4.2', text: `connection lost: ${text}` }, 'deferred', linkErrorKind(err), undefined, { cause: err });
  }
}

/** The message's spool record cannot be read: it never will be, so its recipients fail. */
export class UnreadableMessage extends DeliveryFailure {
  constructor(err: unknown) {
    const text = (err as Error).message;
    super('ECORRUPT', text, { code: 554, enhanced: '5.3.0', text }, 'failed', undefined, undefined, { cause: err });
  }
}

/** Mail that waited behind a throttle or an operator's pause past its lifetime. */
export class HeldPastLifetime extends DeliveryFailure {
  constructor() {
    const text = 'held by a throttle past the maximum queue lifetime';
    super('EHELD', text, { code: 451, enhanced: '4.4.7', text }, 'deferred', 'throttled');
  }
}

/** What a failed send() means for its recipients. */
export function transactionFailure(err: unknown): DeliveryFailure {
  return errorCode(err) === 'ECORRUPT' ? new UnreadableMessage(err) : new TransactionLost(err);
}
