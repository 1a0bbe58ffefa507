import { SeenDigests } from '../../../../runtime/mta/inbound/seen-digests';

test('the same bytes again are seen; other bytes are not; past the bound the oldest is forgotten first', () => {
  const seen = new SeenDigests(2);
  expect(seen.again(Buffer.from('a'))).toBe(false);
  expect(seen.again(Buffer.from('a'))).toBe(true);
  expect(seen.again(Buffer.from('b'))).toBe(false);
  expect(seen.again(Buffer.from('c'))).toBe(false);
  // 'a' was the oldest of three: forgotten.
  expect(seen.again(Buffer.from('a'))).toBe(false);
  expect(seen.again(Buffer.from('c'))).toBe(true);
});
