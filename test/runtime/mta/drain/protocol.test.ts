// The drain wire format and its signature: a batch survives a round trip,
// broken framing is refused whole, and a tampered or replayed request fails.
import {
  CLOCK_WINDOW_S,
  HEADER_SIGNATURE,
  HEADER_TIME,
  decodeBatch,
  encodeBatch,
  isBadRecord,
  signRequest,
  verifyRequest,
  type DrainMessageHeader,
  type DrainRecord,
} from '../../../../runtime/mta/drain/protocol';
import { errorCode } from '../../../../runtime/shared/errors';

const secret = Buffer.from('s'.repeat(40));
const oldSecret = Buffer.from('o'.repeat(40));
const NOW = 1_800_000_000_000;

function rec(id: string, text: string, extra: Partial<DrainMessageHeader> = {}): DrainRecord {
  const body = Buffer.from(text);
  return {
    header: { id, from: 'a@x.example', to: ['b@y.example'], received: NOW - 1000, expires: NOW + 86_400_000, next: NOW + 60_000, attempts: 2, via_original: 'smtp', size: body.length, ...extra },
    body,
  };
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return errorCode(err);
  }
  return undefined;
}

describe('drain batch body', () => {
  test('round trip keeps every header field and the exact bytes', () => {
    const records = [rec('01AAAAAAAAAAAAAAAAAAAAAAAA', 'Subject: a\r\n\r\nhi\r\n', { pool: 'p', vmta: 'v', meta: { tenant: 't' }, client: { ip: '127.0.0.9' } }), rec('01BBBBBBBBBBBBBBBBBBBBBBBB', '')];
    const back = decodeBatch(encodeBatch(records));
    expect(back).toEqual(records);
  });

  test('a truncated body is refused whole', () => {
    const buf = encodeBatch([rec('01AAAAAAAAAAAAAAAAAAAAAAAA', 'x'.repeat(100))]);
    expect(codeOf(() => decodeBatch(buf.subarray(0, buf.length - 1)))).toBe('drain_oversize');
    expect(codeOf(() => decodeBatch(buf.subarray(0, 2)))).toBe('drain_truncated');
    expect(codeOf(() => decodeBatch(buf.subarray(0, 10)))).toBe('drain_truncated');
  });

  test('an oversize length is refused without allocating it', () => {
    const buf = encodeBatch([rec('01AAAAAAAAAAAAAAAAAAAAAAAA', 'x')]);
    const huge = Buffer.from(buf);
    huge.writeUInt32BE(0xffffffff, 0);
    expect(codeOf(() => decodeBatch(huge))).toBe('drain_oversize');
  });

  test('a bad header refuses that record only', () => {
    const good = rec('01AAAAAAAAAAAAAAAAAAAAAAAA', 'x');
    const bad = rec('01CCCCCCCCCCCCCCCCCCCCCCCC', 'yy', { size: 5 });
    const out = decodeBatch(encodeBatch([bad, good]));
    expect(isBadRecord(out[0]) && out[0]).toEqual({ id: '01CCCCCCCCCCCCCCCCCCCCCCCC', error: expect.stringContaining('size') });
    expect(out[1]).toEqual(good);
  });
});

describe('drain signature', () => {
  const body = encodeBatch([rec('01AAAAAAAAAAAAAAAAAAAAAAAA', 'hello')]);

  test('a signed request verifies; the previous secret is accepted during rotation', () => {
    expect(verifyRequest(signRequest(secret, 'n1', body, NOW), body, [secret], NOW)).toEqual({ ok: true, node: 'n1' });
    expect(verifyRequest(signRequest(oldSecret, 'n1', body, NOW), body, [secret, oldSecret], NOW)).toEqual({ ok: true, node: 'n1' });
    expect(verifyRequest(signRequest(oldSecret, 'n1', body, NOW), body, [secret], NOW)).toEqual({ ok: false, reason: 'bad_signature' });
    // A source signing with both during rotation sends two v1= values.
    const both = signRequest(secret, 'n1', body, NOW);
    both[HEADER_SIGNATURE] = `${signRequest(oldSecret, 'n1', body, NOW)[HEADER_SIGNATURE]} ${both[HEADER_SIGNATURE]}`;
    expect(verifyRequest(both, body, [secret], NOW).ok).toBe(true);
  });

  test('one tampered byte is a bad signature', () => {
    const h = signRequest(secret, 'n1', body, NOW);
    const tampered = Buffer.from(body);
    tampered[tampered.length - 1] ^= 1;
    expect(verifyRequest(h, tampered, [secret], NOW)).toEqual({ ok: false, reason: 'bad_signature' });
    expect(verifyRequest({ ...h, 'x-volley-drain-node': 'n2' }, body, [secret], NOW)).toEqual({ ok: false, reason: 'bad_signature' });
  });

  test('a replayed old timestamp is stale, even with a valid signature', () => {
    const h = signRequest(secret, 'n1', body, NOW - (CLOCK_WINDOW_S + 1) * 1000);
    expect(verifyRequest(h, body, [secret], NOW)).toEqual({ ok: false, reason: 'stale' });
    const future = signRequest(secret, 'n1', body, NOW + (CLOCK_WINDOW_S + 1) * 1000);
    expect(verifyRequest(future, body, [secret], NOW)).toEqual({ ok: false, reason: 'stale' });
    expect(verifyRequest(signRequest(secret, 'n1', body, NOW - 60_000), body, [secret], NOW).ok).toBe(true);
  });

  test('missing headers are refused', () => {
    const h = signRequest(secret, 'n1', body, NOW);
    expect(verifyRequest({ ...h, [HEADER_TIME]: undefined }, body, [secret], NOW)).toEqual({ ok: false, reason: 'missing' });
    expect(verifyRequest({ ...h, [HEADER_SIGNATURE]: 'v2=abc' }, body, [secret], NOW)).toEqual({ ok: false, reason: 'missing' });
  });
});
