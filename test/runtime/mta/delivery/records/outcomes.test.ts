// The delivery failure kinds: each a VolleyError with a code, mapped to the reply, outcome and error_kind the attempt log records.
import { ConnectError } from '../../../../../runtime/shared/smtp/connector';
import { VolleyError } from '../../../../../runtime/shared/errors';
import { PROXY_LINK_CODE } from '../../../../../runtime/mta/delivery/connect/proxy-connector';
import { DeliveryFailure, HeldPastLifetime, NoRoute, SessionNotOpened, transactionFailure } from '../../../../../runtime/mta/delivery/records/outcomes';

const summary = (f: DeliveryFailure) => ({ code: f.code, reply: f.reply, outcome: f.outcome, errorKind: f.errorKind });

test('every kind is a VolleyError with a code', () => {
  for (const f of [new NoRoute({ kind: 'null-mx' }), new SessionNotOpened(new Error('x')), transactionFailure(new Error('x')), new HeldPastLifetime()]) {
    expect(f).toBeInstanceOf(VolleyError);
    expect(f).toBeInstanceOf(DeliveryFailure);
    expect(f.code).toMatch(/^E[A-Z]+$/);
  }
});

test('no route: a null MX and a permanent no-route fail, a temporary one defers', () => {
  expect(summary(new NoRoute({ kind: 'null-mx' }))).toEqual({ code: 'ENOROUTE', reply: { code: 556, enhanced: '5.1.10', text: 'recipient domain does not accept mail (null MX)' }, outcome: 'failed', errorKind: 'routing' });
  expect(summary(new NoRoute({ kind: 'no-route', temporary: false, reason: 'no MX' }))).toMatchObject({ reply: { code: 550, enhanced: '5.1.2' }, outcome: 'failed' });
  expect(summary(new NoRoute({ kind: 'no-route', temporary: true, reason: 'SERVFAIL' }))).toMatchObject({ reply: { code: 451, enhanced: '4.4.3', text: 'SERVFAIL' }, outcome: 'deferred' });
});

test('a session that could not be opened defers, even on a 5xx greeting, and keeps its reply, kind and TLS outcome', () => {
  const tls = { policy: 'mta-sts' as const, verified: false, failure: 'sts-policy-invalid' };
  const greeting = new SessionNotOpened(new ConnectError('greeting-rejected', 'refused', { code: 554, text: 'go away' }, tls));
  expect(summary(greeting)).toEqual({ code: 'ESESSION', reply: { code: 554, text: 'go away' }, outcome: 'deferred', errorKind: 'greeting-rejected' });
  expect(greeting.tls).toEqual(tls);
  expect(summary(new SessionNotOpened(new Error('boom')))).toMatchObject({ reply: { code: 451, enhanced: '4.4.1', text: 'error: boom' }, errorKind: 'error' });
  expect(new SessionNotOpened(new VolleyError(PROXY_LINK_CODE, 'link down')).errorKind).toBe('proxy-link');
});

test('a failed transaction: a lost connection defers (proxy-link when the link was lost), an unreadable record fails', () => {
  expect(summary(transactionFailure(new Error('ECONNRESET')))).toEqual({ code: 'ELOST', reply: { code: 451, enhanced: '4.4.2', text: 'connection lost: ECONNRESET' }, outcome: 'deferred', errorKind: undefined });
  expect(transactionFailure(new VolleyError(PROXY_LINK_CODE, 'lost')).errorKind).toBe('proxy-link');
  expect(summary(transactionFailure(new VolleyError('ECORRUPT', 'record is corrupt')))).toEqual({ code: 'ECORRUPT', reply: { code: 554, enhanced: '5.3.0', text: 'record is corrupt' }, outcome: 'failed', errorKind: undefined });
});

test('mail held past its lifetime defers as throttled', () => {
  expect(summary(new HeldPastLifetime())).toEqual({ code: 'EHELD', reply: { code: 451, enhanced: '4.4.7', text: 'held by a throttle past the maximum queue lifetime' }, outcome: 'deferred', errorKind: 'throttled' });
});
