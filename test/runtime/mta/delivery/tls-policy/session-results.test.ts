import pino from 'pino';
import { ConnectError, type OutboundSession, type SessionInfo } from '../../../../../runtime/shared/smtp/connector';
import type { MxTls, ReportedPolicy } from '../../../../../runtime/mta/delivery/tls-policy/resolver';
import { SessionResults } from '../../../../../runtime/mta/delivery/tls-policy/session-results';
import { readDay, TlsRptStore } from '../../../../../runtime/mta/delivery/tls-policy/tls-rpt-store';
import { tempDir } from '../../../../helpers/tmp';

// How each session counts for TLS-RPT, from what the connector reports in
// SessionInfo.tls / ConnectError.tls: a TlsOutcome (policy, verified, failure).

const dir = tempDir();
const now = Date.parse('2026-12-05T12:00:00Z');
const sts: ReportedPolicy = { type: 'sts', domain: 'a.test', strings: ['version: STSv1'], mxHost: ['mx.a.test'] };
const plainPolicy: ReportedPolicy = { type: 'no-policy-found', domain: 'b.test', strings: [] };

function session(tls: unknown): OutboundSession {
  const info = { mxHost: 'mx.a.test', mxIp: '127.0.0.9', port: 25, helo: 'h', via: 'direct', connectMs: 1, localIp: '127.0.0.1', tls } as SessionInfo;
  return { info, usable: true, send: () => Promise.reject(new Error('unused')), close: () => undefined };
}
const use = (requirement: Extract<MxTls, { use: true }>['requirement'], report = sts, failure?: { resultType: string; reason: string }): Extract<MxTls, { use: true }> => ({ use: true, host: 'mx.a.test', requirement, report, failure });

test('successes and failures per policy, with the RFC 8460 result type', async () => {
  const store = new TlsRptStore({ dir, worker: 'w0', now: () => now, flushMs: 0 });
  const results = new SessionResults(pino({ level: 'silent' }), store);
  const verify = { mode: 'verify' as const, policy: 'mta-sts' as const, names: ['mx.a.test'] };
  results.opened('a.test', use(verify), session({ version: 'TLSv1.3', cipher: 'x', verified: true })); // today's shape: encrypted
  results.opened('a.test', use(verify), session({ policy: 'mta-sts', verified: true, version: 'TLSv1.3' })); // A's shape, check passed
  results.opened('a.test', use({ mode: 'verify', policy: 'mta-sts', names: ['mx.a.test'], testing: true }), session({ policy: 'mta-sts', verified: false, failure: 'certificate-host-mismatch', version: 'TLSv1.3' }));
  results.opened('a.test', use({ mode: 'verify', policy: 'mta-sts', names: ['mx.a.test'], testing: true }), session(undefined)); // testing, no TLS at all
  results.opened('a.test', use({ mode: 'verify', policy: 'mta-sts', names: ['mx.a.test'], testing: true }, sts, { resultType: 'sts-policy-invalid', reason: 'not in policy' }), session({ version: 'TLSv1.3', cipher: 'x', verified: false }));
  results.failed('a.test', use(verify), '127.0.0.9', new ConnectError('tls-required', 'certificate not valid for mx.a.test'));
  results.failed('a.test', use(verify), '127.0.0.9', new ConnectError('refused', 'connection refused')); // not a TLS matter: not counted
  results.refused('a.test', { use: false, host: 'mx9.a.test', resultType: 'sts-policy-invalid', reason: 'MX mx9.a.test is not in the MTA-STS policy', report: sts });
  results.opened('b.test', use({ mode: 'may', policy: 'may' }, plainPolicy), session(undefined)); // opportunistic in clear: a success
  await store.close();

  const day = readDay(dir, '2026-12-05');
  const a = day.get('a.test')![0];
  expect({ ok: a.ok, failed: a.failed }).toEqual({ ok: 2, failed: 5 });
  expect(a.failures.map((f) => [f.resultType, f.mxHost, f.count])).toEqual([
    ['certificate-host-mismatch', 'mx.a.test', 1],
    ['starttls-not-supported', 'mx.a.test', 1],
    ['sts-policy-invalid', 'mx.a.test', 1],
    ['validation-failure', 'mx.a.test', 1],
    ['sts-policy-invalid', 'mx9.a.test', 1],
  ]);
  expect(day.get('b.test')).toEqual([{ policy: plainPolicy, ok: 1, failed: 0, failures: [] }]);
});

