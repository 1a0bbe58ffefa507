import { mxMatches, parseStsPolicy, parseStsTxt } from '../../../../../runtime/mta/delivery/tls-policy/sts-policy';

describe('the _mta-sts TXT record (RFC 8461 3.1)', () => {
  test('the id of the one v=STSv1 record, chunks joined', () => {
    expect(parseStsTxt([['v=spf1 -all'], ['v=STSv1; ', 'id=20160831085700Z;']])).toBe('20160831085700Z');
    expect(parseStsTxt([['v=STSv1;id=abc123']])).toBe('abc123');
  });

  test('no record, two records, a bad id or a malformed field mean no policy', () => {
    expect(parseStsTxt([])).toBeUndefined();
    expect(parseStsTxt([['v=STSv1; id=a'], ['v=STSv1; id=b']])).toBeUndefined();
    expect(parseStsTxt([['v=STSv1; id=not-alnum']])).toBeUndefined();
    expect(parseStsTxt([['v=STSv1; id=' + 'a'.repeat(33)]])).toBeUndefined();
    expect(parseStsTxt([['v=STSv1; id=a; garbage']])).toBeUndefined();
    expect(parseStsTxt([['v=STSv1']])).toBeUndefined();
    expect(parseStsTxt([['id=a; v=STSv1']])).toBeUndefined();
  });
});

describe('the policy file (RFC 8461 3.2)', () => {
  test('version, mode, max_age and every mx line; CRLF or LF; unknown keys ignored', () => {
    const p = parseStsPolicy('version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET.\r\nmax_age: 604800\r\nextension: x\r\n');
    expect(p).toEqual({
      mode: 'enforce',
      mx: ['mail.example.com', '*.example.net'],
      maxAge: 604800,
      lines: ['version: STSv1', 'mode: enforce', 'mx: mail.example.com', 'mx: *.Example.NET.', 'max_age: 604800', 'extension: x'],
    });
  });

  test('max_age is capped at one year', () => {
    expect(parseStsPolicy('version: STSv1\nmode: testing\nmx: a.example\nmax_age: 99999999\n').maxAge).toBe(31_557_600);
  });

  test.each([
    ['a wrong version', 'version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 10', /version is "STSv2"/],
    ['no mode', 'version: STSv1\nmx: a.example\nmax_age: 10', /mode is missing/],
    ['an unknown mode', 'version: STSv1\nmode: strict\nmx: a.example\nmax_age: 10', /mode is "strict"/],
    ['no max_age', 'version: STSv1\nmode: enforce\nmx: a.example', /max_age is missing/],
    ['a non-numeric max_age', 'version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1d', /max_age "1d"/],
    ['enforce without mx', 'version: STSv1\nmode: enforce\nmax_age: 10', /no mx pattern/],
    ['a line that is not key: value', 'version: STSv1\n<html>', /is not "key: value"/],
  ])('%s is refused with ESTSPOLICY', (_what, text, message) => {
    expect(() => parseStsPolicy(text)).toThrow(message);
    expect(() => parseStsPolicy(text)).toThrow(expect.objectContaining({ code: 'ESTSPOLICY' }) as Error);
  });

  test('mode none needs no mx', () => {
    expect(parseStsPolicy('version: STSv1\nmode: none\nmax_age: 10').mode).toBe('none');
  });
});

describe('MX patterns (RFC 8461 4.1)', () => {
  test('exact names, case and trailing dot aside', () => {
    expect(mxMatches('MX1.Example.com.', ['mx1.example.com'])).toBe(true);
    expect(mxMatches('mx2.example.com', ['mx1.example.com'])).toBe(false);
  });

  test('a wildcard stands for exactly one leftmost label', () => {
    expect(mxMatches('mx1.example.net', ['*.example.net'])).toBe(true);
    expect(mxMatches('example.net', ['*.example.net'])).toBe(false);
    expect(mxMatches('a.b.example.net', ['*.example.net'])).toBe(false);
    expect(mxMatches('mx1.badexample.net', ['*.example.net'])).toBe(false);
  });
});
