// Mailbox syntax at intake: RFC 5321 (with SMTPUTF8), and nothing the proxy link would refuse later.
import { isValidDomain, isValidMailbox } from '../../../../runtime/mta/intake/address';
import { transactionProblem } from '../../../../runtime/shared/proxy-protocol/envelope';

describe('isValidMailbox', () => {
  test('takes ordinary, quoted, SMTPUTF8 and address-literal mailboxes', () => {
    for (const a of ['a@example.test', 'first.last+tag@sub.example.test', '"quoted"@example.test', '"a\\"b"@example.test', 'ünï@exämple.test', 'root@localhost', 'x@[127.0.0.1]', 'x@[IPv6:::1]', '😀@example.test']) {
      expect([a, isValidMailbox(a)]).toEqual([a, true]);
    }
  });

  test('refuses control characters in a quoted local part (qtextSMTP excludes them)', () => {
    for (const a of ['"a\x00\x1b[31m"@x.test', '"a\x1b"@x.test', '"a\\\x00"@x.test', '"a\x7f"@x.test', '"a\t"@x.test', '"\\\x1b"@x.test']) {
      expect([a, isValidMailbox(a)]).toEqual([a, false]);
    }
  });

  test('refuses what the proxy link would refuse: white space and angle brackets, even quoted', () => {
    for (const a of ['"a b"@x.test', '"a<b"@x.test', '"a>b"@x.test', '"a\u00a0b"@x.test', 'a\u2028b@x.test']) {
      expect([a, isValidMailbox(a)]).toEqual([a, false]);
      expect(transactionProblem(a, ['b@x.test'])).toBeDefined();
    }
  });

  test('refuses C1 controls, lone surrogates and U+FFFD (bytes that were not UTF-8)', () => {
    for (const a of ['a\u0085@x.test', 'a\u009b@x.test', 'a\ud800@x.test', 'a\udc00b@x.test', 'a\ufffd@x.test', 'a@\ud800.test', 'a@b\u0085.test']) {
      expect([a, isValidMailbox(a)]).toEqual([a, false]);
    }
  });

  test('a domain IDNA cannot turn into an A-label could never be looked up', () => {
    expect(isValidDomain('exämple.test')).toBe(true);
    expect(isValidDomain('a\u200db.test')).toBe(false);
  });
});
