import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { base32, loadVerpSecret, unbase32, Verp } from '../../../../../runtime/mta/delivery/records/verp';
import { newMessageId } from '../../../../../runtime/mta/message-id';
import { tempDir } from '../../../../helpers/tmp';

const dir = tempDir();
const secret = Buffer.from('0123456789abcdef0123456789abcdef');
const verp = new Verp({ domain: 'bounces.shop.test', prefix: 'bounce', secretFile: '-' }, secret);

test('base32 round-trips every length, and refuses foreign characters and stray bits', () => {
  for (let n = 0; n < 40; n++) {
    const bytes = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff));
    expect(unbase32(base32(bytes))).toEqual(bytes);
  }
  expect(unbase32('u0')).toBeUndefined(); // u is not Crockford
  expect(unbase32('01')).toBeUndefined(); // 10 bits: a byte and two non-zero padding bits
});

test('a VERP address names the message and the recipient, and reads back; upper-cased by a bouncing MTA it still does', () => {
  const id = newMessageId();
  const address = verp.address(id, 'Jane.Doe+tag@Example.com')!;
  expect(address).toMatch(/^bounce\+[0-9a-z]+@bounces\.shop\.test$/);
  expect(verp.read(address)).toEqual({ ok: true, messageId: id, recipient: 'Jane.Doe+tag@Example.com' });
  expect(verp.read(address.toUpperCase())).toEqual({ ok: true, messageId: id, recipient: 'Jane.Doe+tag@Example.com' });
  // Message id (26) + recipient (24 bytes -> 39) + MAC (16): compact, and no separators to lose.
  expect(address.indexOf('@') - 'bounce+'.length).toBe(26 + 39 + 16);
});

test('a forged or altered token is not believed; other addresses of the domain are not VERP at all', () => {
  const id = newMessageId();
  const good = verp.address(id, 'a@example.com')!;
  const local = good.slice(0, good.indexOf('@'));
  // Another recipient spliced in, with the MAC of the first.
  const other = verp.address(id, 'b@example.com')!;
  const spliced = `${other.slice(0, other.indexOf('@') - 16)}${local.slice(-16)}@bounces.shop.test`;
  expect(verp.read(spliced)).toEqual({ ok: false, reason: 'forged' });
  // One MAC character changed.
  const flipped = `${local.slice(0, -1)}${local.endsWith('0') ? '1' : '0'}@bounces.shop.test`;
  expect(verp.read(flipped)).toEqual({ ok: false, reason: 'forged' });
  // The right layout under another key.
  const otherKey = new Verp({ domain: 'bounces.shop.test', prefix: 'bounce', secretFile: '-' }, Buffer.alloc(32, 7));
  expect(verp.read(otherKey.address(id, 'a@example.com')!)).toEqual({ ok: false, reason: 'forged' });
  expect(verp.read('bounce+short@bounces.shop.test')).toEqual({ ok: false, reason: 'malformed' });
  expect(verp.read('postmaster@bounces.shop.test')).toBeUndefined();
  expect(verp.read(good.replace('bounces.shop.test', 'elsewhere.test'))).toBeUndefined();
});

test('only Volley ids get a token, and pools opt in', () => {
  expect(verp.names('not-a-volley-id')).toBe(false);
  expect(verp.address('s1', 'a@example.com')).toBeUndefined();
  expect(verp.covers(undefined)).toBe(true);
  const some = new Verp({ domain: 'b.test', prefix: 'bounce', secretFile: '-', pools: ['bulk'] }, secret);
  expect([some.covers('bulk'), some.covers('tx'), some.covers(undefined)]).toEqual([true, false, false]);
});

test('the key file: a trailing line end is not part of the key, and a short key is refused with a clear error', () => {
  const file = join(dir, 'verp.key');
  writeFileSync(file, `${'k'.repeat(32)}\n`);
  expect(loadVerpSecret(file)).toEqual(Buffer.from('k'.repeat(32)));
  writeFileSync(file, 'short\n');
  expect(() => loadVerpSecret(file)).toThrow(expect.objectContaining({ code: 'EVERPSECRET', message: expect.stringMatching(/5 bytes, a VERP key needs at least 32/) }));
  expect(() => loadVerpSecret(join(dir, 'missing'))).toThrow(expect.objectContaining({ code: 'EVERPSECRET' }));
});
