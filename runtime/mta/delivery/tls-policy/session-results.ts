// What the engine tells the TLS policy side about each session: one opened
// under a requirement, one whose TLS failed, or an MX the policy refused.
// Each becomes a log line (tls_policy, tls_failure) and a TLS-RPT count.

import type { Logger } from 'pino';
import { ConnectError, type OutboundSession, type TlsOutcome } from '../../../shared/smtp/connector';
import type { MxTls } from './resolver';
import type { TlsRptStore } from './tls-rpt-store';

/** RFC 8460 4.3 result types: a connector's failure word is reported as is when it is one of them. */
const RESULT_TYPES = new Set([
  'starttls-not-supported',
  'certificate-host-mismatch',
  'certificate-expired',
  'certificate-not-trusted',
  'validation-failure',
  'tlsa-invalid',
  'dnssec-invalid',
  'dane-required',
  'sts-policy-fetch-error',
  'sts-policy-invalid',
  'sts-webpki-invalid',
]);

/**
 * A session's TLS as the connector reports it: a TlsOutcome (policy, verified,
 * failure) in SessionInfo.tls, with the version and cipher once encrypted.
 */
function sessionTls(info: OutboundSession['info']): { encrypted: boolean; outcome?: TlsOutcome } {
  const tls = info.tls as (Partial<TlsOutcome> & { version?: string }) | undefined;
  return { encrypted: tls?.version !== undefined, outcome: typeof tls?.policy === 'string' ? (tls as TlsOutcome) : undefined };
}

export class SessionResults {
  constructor(
    private readonly logger: Logger,
    private readonly store?: TlsRptStore,
  ) {}

  /** The policy refused this MX before any connection (MTA-STS enforce, failed TLSA lookup). */
  refused(domain: string, mx: Extract<MxTls, { use: false }>, sendingIp?: string): void {
    this.logger.warn({ domain, mx_host: mx.host, tls_policy: mx.report.type === 'tlsa' ? 'dane' : 'mta-sts', tls_failure: mx.resultType }, `TLS policy: ${mx.reason}`);
    this.store?.add({ policy: mx.report, ok: false, failure: { resultType: mx.resultType, mxHost: mx.host, sendingIp, reasonCode: mx.reason } });
  }

  /** A session is open under `mx`'s requirement. */
  opened(domain: string, mx: Extract<MxTls, { use: true }>, session: OutboundSession, sendingIp?: string): void {
    const { requirement } = mx;
    const { encrypted, outcome } = sessionTls(session.info);
    const failure = mx.failure ?? (outcome?.failure ? { resultType: resultType(outcome.failure), reason: outcome.failure } : undefined);
    if (failure) this.logger.warn({ domain, mx_host: mx.host, tls_policy: requirement.policy, tls_failure: failure.resultType, testing: requirement.testing === true }, `TLS policy: ${failure.reason}`);
    // Plain opportunistic sessions succeed by definition (RFC 8460's no-policy-found counts sessions);
    // a policy's session needs TLS, and the certificate check where one was asked for (verify, dane, MTA-STS testing).
    const checked = requirement.mode === 'verify' || requirement.mode === 'dane' || requirement.testing === true;
    const plain = (requirement.mode === 'may' || requirement.mode === 'none') && requirement.testing !== true;
    const ok = !failure && (plain || (encrypted && (!checked || !outcome || outcome.verified)));
    this.store?.add({
      policy: mx.report,
      ok,
      failure: ok
        ? undefined
        : {
            resultType: failure?.resultType ?? (encrypted ? 'validation-failure' : 'starttls-not-supported'),
            mxHost: mx.host,
            receivingIp: session.info.mxIp,
            sendingIp: session.info.localIp ?? sendingIp,
            reasonCode: failure?.reason,
          },
    });
  }

  /** The connection failed; counted only when TLS was why (the connector says tls-required, or reports an outcome). */
  failed(domain: string, mx: Extract<MxTls, { use: true }>, ip: string, err: unknown, sendingIp?: string): void {
    const outcome = err instanceof ConnectError ? (err as ConnectError & { tls?: TlsOutcome }).tls : undefined;
    if (!(err instanceof ConnectError && err.kind === 'tls-required') && !outcome?.failure) return;
    const reason = outcome?.failure ?? (err as Error).message;
    const type = outcome?.failure ? resultType(outcome.failure) : /STARTTLS/i.test(reason) && /not (offered|supported)|does not offer/i.test(reason) ? 'starttls-not-supported' : 'validation-failure';
    this.logger.warn({ domain, mx_host: mx.host, mx_ip: ip, tls_policy: mx.requirement.policy, tls_failure: type }, `TLS policy not met: ${reason}`);
    this.store?.add({ policy: mx.report, ok: false, failure: { resultType: type, mxHost: mx.host, receivingIp: ip, sendingIp, reasonCode: reason } });
  }
}

function resultType(failure: string): string {
  return RESULT_TYPES.has(failure) ? failure : 'validation-failure';
}
