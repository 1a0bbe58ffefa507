import { randomBytes } from 'node:crypto';

// Crockford base32, time-ordered (48-bit ms) then 80 random bits, like a ULID:
// ids sort by acceptance time, and are unique across nodes without
// coordination, which the drain's deduplication at the destination relies on.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
let pool = Buffer.alloc(0);
let poolAt = 0;

export function newMessageId(now = Date.now()): string {
  let out = '';
  let t = now;
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[t % 32] + out;
    t = Math.floor(t / 32);
  }
  if (poolAt + 16 > pool.length) {
    pool = randomBytes(4096);
    poolAt = 0;
  }
  for (let i = 0; i < 16; i++) out += ALPHABET[pool[poolAt++] & 31];
  return out;
}
