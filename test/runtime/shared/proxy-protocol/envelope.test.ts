// The transaction envelope rule the proxy enforces and the intake applies up front.
import { DEFAULT_MAX_FRAME, encodeFrame } from '../../../../runtime/shared/proxy-protocol/codec';
import { MAX_TRANSACTION_BODY, transactionProblem, transactionTooLarge } from '../../../../runtime/shared/proxy-protocol/envelope';

describe('transaction envelope', () => {
  test('sender and recipients: no white space, angle brackets or control characters; at least one recipient', () => {
    expect(transactionProblem('', ['a@b.test'])).toBeUndefined();
    expect(transactionProblem('ünï@b.test', ['a@b.test', '"q"@c.test'])).toBeUndefined();
    expect(transactionProblem('a b@c', ['a@b.test'])).toMatch(/sender/);
    expect(transactionProblem('a@b.test', [])).toBe('no recipients');
    expect(transactionProblem('a@b.test', ['x@y\r\nRCPT TO:<z@y>'])).toMatch(/recipient/);
    expect(transactionProblem('a@b.test', [''])).toMatch(/recipient/);
    expect(transactionProblem(7, ['a@b.test'])).toMatch(/sender/);
  });

  test('too large counts the header JSON beside the body, with room for what delivery adds', () => {
    const from = 'a@b.test';
    const to = ['c@d.test'];
    const header = Buffer.byteLength(JSON.stringify({ t: 'transaction', from, to }));
    const frameOverhead = encodeFrame({ t: 'transaction', from, to }).length - 4 - header; // the header-length field
    const margin = DEFAULT_MAX_FRAME - MAX_TRANSACTION_BODY;
    const largest = DEFAULT_MAX_FRAME - frameOverhead - header - margin;
    expect(transactionTooLarge(from, to, largest)).toBe(false);
    expect(transactionTooLarge(from, to, largest + 1)).toBe(true);
    // Many long recipients push a body under MAX_TRANSACTION_BODY over.
    const many = Array.from({ length: 200 }, (_, i) => `${'r'.repeat(60)}${i}@${'d'.repeat(180)}.test`);
    expect(transactionTooLarge(from, many, MAX_TRANSACTION_BODY - 1000)).toBe(true);
  });
});
