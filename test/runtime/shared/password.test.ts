// Password hashes: the unmatchable hash an unknown user is checked against.
import { isPasswordHash, unmatchableHash, verifyPassword } from '../../../runtime/shared/password';
import { ALICE_HASH } from '../../helpers/config';

describe('unmatchableHash', () => {
  test('has the cost of the hash it imitates, a fresh salt, and matches no password', async () => {
    const h = unmatchableHash(ALICE_HASH);
    expect(isPasswordHash(h)).toBe(true);
    expect(h.split('$').slice(1, 4)).toEqual(ALICE_HASH.split('$').slice(1, 4));
    expect(h).not.toBe(unmatchableHash(ALICE_HASH));
    expect(await verifyPassword('wonderland', h)).toBe(false);
    expect(await verifyPassword('', h)).toBe(false);
  });

  test('without a hash to imitate, or a malformed one, takes the default cost', () => {
    expect(unmatchableHash().split('$').slice(1, 4)).toEqual(['16384', '8', '1']);
    expect(unmatchableHash('not-a-hash').split('$').slice(1, 4)).toEqual(['16384', '8', '1']);
  });
});
