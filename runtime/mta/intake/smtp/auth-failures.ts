/**
 * AUTH failures per client address, across the sessions of one worker: a
 * leaky bucket per address. Each failure adds one; the count drains by one
 * every `leakMs`; at `max` the address is refused AUTH without a password
 * check (which would cost a scrypt) until it has drained below again. So a
 * guesser gets `max` tries at once, then one per `leakMs`, however many
 * sessions it opens. Exim operators' "15 failures in 2 h" ratelimit and
 * fail2ban's postfix-sasl jail (5 in 10 min) are the same idea; the defaults
 * here (10 at once, then one a minute) stay clear of a real client with a
 * stale password retrying a few times.
 *
 * An IPv6 client is counted by its /64 (one host usually holds a whole /64,
 * so per address it could try forever) and an IPv4-mapped address as IPv4.
 *
 * Password checks in flight count too (acquire/settle): a check may start
 * only while the bucket could take a failure for it and for every check
 * already running from that address; otherwise it waits for one of them to
 * end. Checking `blocked` at AUTH and counting the failure after the scrypt
 * let N parallel sessions each have a guess in flight before the bucket
 * filled. Waiting rather than refusing keeps an injector that opens many
 * authenticated sessions at once working (its checks succeed and make room);
 * a guesser gets at most `max` checks at a time, and 421 once they fail.
 *
 * Per worker, in memory: with W workers an address gets up to W times the
 * allowance, and a restart forgets. Bounded: past `maxAddresses` the least
 * recently failing address is forgotten, so a spray from many addresses
 * cannot grow memory (it can only flush old entries, which needs that many
 * addresses).
 */
import { isIPv4, isIPv6 } from 'node:net';

export interface AuthFailureLimits {
  max: number;
  leakMs: number;
  maxAddresses: number;
}

export const DEFAULT_AUTH_FAILURE_LIMITS: AuthFailureLimits = { max: 10, leakMs: 60_000, maxAddresses: 10_000 };

interface Bucket {
  level: number;
  at: number;
}

interface InFlight {
  checks: number;
  waiting: ((go: boolean) => void)[];
}

export class AuthFailures {
  // Map order is recency: an address that fails again is moved to the end.
  private readonly buckets = new Map<string, Bucket>();
  // Not bounded by maxAddresses: an entry lives only while a session holds or
  // waits for a check, so open sessions bound it.
  private readonly inFlight = new Map<string, InFlight>();

  constructor(
    private readonly limits: AuthFailureLimits = DEFAULT_AUTH_FAILURE_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** True while the address has no AUTH attempt left: one more failure would overflow the bucket. */
  blocked(address: string): boolean {
    return this.level(clientKey(address)) > this.limits.max - 1;
  }

  /** Counts one failure; true when it used up the address's allowance. */
  record(address: string): boolean {
    address = clientKey(address);
    const level = this.level(address) + 1;
    this.buckets.delete(address);
    this.buckets.set(address, { level, at: this.now() });
    if (this.buckets.size > this.limits.maxAddresses) this.buckets.delete(this.buckets.keys().next().value!);
    return level >= this.limits.max;
  }

  /**
   * Takes a password-check slot for the address: true once the check may run
   * (call settle() when it ends, whatever happens), false when the address is
   * blocked (no check, no settle). Waits while every slot is in flight.
   */
  acquire(address: string): Promise<boolean> {
    const key = clientKey(address);
    const f = this.inFlight.get(key) ?? { checks: 0, waiting: [] };
    this.inFlight.set(key, f);
    return new Promise((resolve) => {
      f.waiting.push(resolve);
      this.admit(key, f);
    });
  }

  /** A check acquire() allowed has ended; `failed` counts it as a failure. */
  settle(address: string, failed: boolean): void {
    const key = clientKey(address);
    const f = this.inFlight.get(key);
    if (!f || f.checks === 0) throw new Error(`AuthFailures.settle(${key}) without acquire`);
    f.checks--;
    if (failed) this.record(key);
    this.admit(key, f);
  }

  /** Checks in flight for the address (for tests). */
  checking(address: string): number {
    return this.inFlight.get(clientKey(address))?.checks ?? 0;
  }

  /** Lets waiting checks start while the bucket has room for all of them failing. */
  private admit(key: string, f: InFlight): void {
    while (f.waiting.length > 0) {
      const level = this.level(key);
      if (level > this.limits.max - 1) {
        for (const w of f.waiting.splice(0)) w(false);
        break;
      }
      if (level + f.checks > this.limits.max - 1) break;
      f.checks++;
      f.waiting.shift()!(true);
    }
    if (f.checks === 0 && f.waiting.length === 0) this.inFlight.delete(key);
  }

  /** Addresses remembered (for tests and metrics). */
  get size(): number {
    return this.buckets.size;
  }

  private level(address: string): number {
    const b = this.buckets.get(address);
    if (!b) return 0;
    const level = b.level - (this.now() - b.at) / this.limits.leakMs;
    if (level > 0) return level;
    this.buckets.delete(address);
    return 0;
  }
}

/** What one client is: an IPv4 address (mapped or not), or an IPv6 /64. */
export function clientKey(address: string): string {
  if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return address.slice(7);
  const plain = address.split('%')[0];
  if (!isIPv6(plain)) return address;
  const width = (parts: string[]): number => parts.reduce((n, p) => n + (p.includes('.') ? 2 : 1), 0);
  const [head, tail] = plain.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - width(h) - width(t)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/** The worker's table, shared by every listener's sessions (a client is one client on any port). */
export const workerAuthFailures = new AuthFailures();
