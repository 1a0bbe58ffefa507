import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

// Format: scrypt$N$r$p$saltB64$hashB64 — self-describing so the cost can be
// raised later without invalidating existing entries.
const KEYLEN = 32;
const DEFAULT_COST = { N: 16384, r: 8, p: 1 };

export async function hashPassword(password: string, cost = DEFAULT_COST): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(password, salt, cost);
  return `scrypt$${cost.N}$${cost.r}$${cost.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/**
 * A hash no password matches (random salt and key), with the cost of `like`
 * (or the default): checking a password against it costs what checking it
 * against `like` costs, which is what an unknown user must cost.
 */
export function unmatchableHash(like?: string): string {
  const cost = like?.split('$').slice(1, 4).join('$');
  const params = cost && /^\d+\$\d+\$\d+$/.test(cost) ? cost : `${DEFAULT_COST.N}$${DEFAULT_COST.r}$${DEFAULT_COST.p}`;
  return `scrypt$${params}$${randomBytes(16).toString('base64')}$${randomBytes(KEYLEN).toString('base64')}`;
}

export function isPasswordHash(value: string): boolean {
  return /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/.test(value);
}

export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  const expected = Buffer.from(parts[5], 'base64');
  const actual = await scryptAsync(password, Buffer.from(parts[4], 'base64'), { N, r, p });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** Tokens for the HTTP API are stored as SHA-256 so the config in git holds no secret. */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

function scryptAsync(password: string, salt: Buffer, cost: { N: number; r: number; p: number }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, KEYLEN, { N: cost.N, r: cost.r, p: cost.p, maxmem: 64 * 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}
