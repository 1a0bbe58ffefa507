import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { verifyPassword } from '../../shared/password';

/**
 * Checks SMTP AUTH against the configured users. scrypt costs ~50 ms of CPU by
 * design, too much to pay on every connection of an injector that opens a new
 * one per message, so a password that verified once is remembered as an HMAC
 * under a key that lives only in this process.
 */
export class Credentials {
  private users = new Map<string, string>();
  private readonly verified = new Map<string, Buffer>();
  private readonly key = randomBytes(32);

  constructor(users: { name: string; password: string }[]) {
    this.setUsers(users);
  }

  setUsers(users: { name: string; password: string }[]): void {
    this.users = new Map(users.map((u) => [u.name, u.password]));
    this.verified.clear();
  }

  async check(username: string, password: string): Promise<boolean> {
    const encoded = this.users.get(username);
    if (!encoded) return false;
    const mac = createHmac('sha256', this.key).update(encoded).update('\0').update(password).digest();
    const known = this.verified.get(username);
    if (known && timingSafeEqual(known, mac)) return true;
    if (!(await verifyPassword(password, encoded))) return false;
    if (this.users.get(username) === encoded) this.verified.set(username, mac);
    return true;
  }
}
