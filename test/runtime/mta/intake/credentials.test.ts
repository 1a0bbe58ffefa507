// SMTP AUTH checks: an unknown user name must cost what a known one costs,
// so the time of the answer does not tell which names exist.
import { Credentials } from '../../../../runtime/mta/intake/credentials';
import { verifyPassword } from '../../../../runtime/shared/password';
import { ALICE_HASH } from '../../../helpers/config';

const cost = (hash: string): string => hash.split('$').slice(0, 4).join('$');

describe('Credentials', () => {
  test('an unknown user is checked with the same verify function, at the known users\' cost, and fails', async () => {
    const calls: string[] = [];
    const spy = async (password: string, encoded: string): Promise<boolean> => {
      calls.push(encoded);
      return verifyPassword(password, encoded);
    };
    const c = new Credentials([{ name: 'alice', password: ALICE_HASH }], spy);
    expect(await c.check('mallory', 'wonderland')).toBe(false);
    expect(await c.check('alice', 'wrong')).toBe(false);
    expect(calls).toHaveLength(2);
    expect(cost(calls[0])).toBe(cost(ALICE_HASH));
    expect(calls[0]).not.toBe(ALICE_HASH);
    expect(calls[1]).toBe(ALICE_HASH);
    expect(await c.check('alice', 'wonderland')).toBe(true);
  });

  test('the unknown-user hash follows the users on a config refresh (the commonest cost)', async () => {
    const calls: string[] = [];
    const c = new Credentials([], async (_p, encoded) => {
      calls.push(encoded);
      return false;
    });
    await c.check('nobody', 'x');
    expect(cost(calls[0])).toBe('scrypt$16384$8$1');
    c.setUsers([
      { name: 'a', password: ALICE_HASH },
      { name: 'b', password: ALICE_HASH.replace('c2FsdHNhbHRzYWx0MTIzNA==', 'b3RoZXJzYWx0b3RoZXIxMg==') },
      { name: 'c', password: 'scrypt$2048$8$1$c2FsdA==$aGFzaA==' },
    ]);
    await c.check('nobody', 'x');
    expect(cost(calls[1])).toBe(cost(ALICE_HASH));
  });
});
