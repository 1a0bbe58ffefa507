import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { unmatchableHash, verifyPassword } from '../../shared/password';

export type VerifyPassword = (password: string, encoded: string) => Promise<boolean>;

/**
 * Checks SMTP AUTH against the configured users. scrypt costs ~50 ms of CPU by
 * design, too much to pay on every connection of an injector that opens a new
 * one per message, so a password that verified once is remembered as an HMAC
 * under a key that lives only in this process.
 *
 * An unknown user costs the same scrypt as a known one (against a hash no
 * password matches, with the users' cost), so the answer's timing does not
 * tell which user names exist.
 */
export class Credentials {
  private users = new Map<string, string>();
  private readonly verified = new Map<string, Buffer>();
  private readonly key = randomBytes(32);
  private unknownUser = unmatchableHash();

  constructor(
    users: { name: string; password: string }[],
    private readonly verify: VerifyPassword = verifyPassword,
  ) {
    this.setUsers(users);
  }

  setUsers(users: { name: string; password: string }[]): void {
    this.users = new Map(users.map((u) => [u.name, u.password]));
    this.verified.clear();
    this.unknownUser = unmatchableHash(commonestCost(users.map((u) => u.password)));
  }

  async check(username: string, password: string): Promise<boolean> {
    const encoded = this.users.get(username);
    if (!encoded) {
      await this.verify(password, this.unknownUser);
      return false;
    }
    const mac = createHmac('sha256', this.key).update(encoded).update('\0').update(password).digest();
    const known = this.verified.get(username);
    if (known && timingSafeEqual(known, mac)) return true;
    if (!(await this.verify(password, encoded))) return false;
    if (this.users.get(username) === encoded) this.verified.set(username, mac);
    return true;
  }
}

/** A hash with the cost most users' hashes have: what an unknown name should cost to check. */
function commonestCost(hashes: string[]): string | undefined {
  const counts = new Map<string, { n: number; hash: string }>();
  for (const h of hashes) {
    const cost = h.split('$').slice(1, 4).join('$');
    const c = counts.get(cost);
    if (c) c.n++;
    else counts.set(cost, { n: 1, hash: h });
  }
  let best: { n: number; hash: string } | undefined;
  for (const c of counts.values()) if (!best || c.n > best.n) best = c;
  return best?.hash;
}
