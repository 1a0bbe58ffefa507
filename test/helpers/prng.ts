// A small seeded PRNG (mulberry32) for fuzz tests: the same seed gives the
// same cases, so a failure found once is replayed by passing its seed back.
export class Prng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** An integer in [min, max], spread evenly over orders of magnitude (small sizes as often as huge ones). */
  logInt(min: number, max: number): number {
    const lo = Math.log(min + 1);
    return Math.min(max, Math.max(min, Math.floor(Math.exp(lo + this.next() * (Math.log(max + 1) - lo)) - 1)));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  /** `n` random bytes; `exclude` bytes are replaced by 0x41. */
  bytes(n: number, exclude: readonly number[] = []): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) {
      const v = (this.next() * 4294967296) >>> 0;
      for (let j = 0; j < 4 && i + j < n; j++) b[i + j] = (v >>> (j * 8)) & 0xff;
    }
    if (exclude.length > 0) for (let i = 0; i < n; i++) if (exclude.includes(b[i])) b[i] = 0x41;
    return b;
  }
}

/** The seed from VOLLEY_FUZZ_SEED, else a fresh one; printed by the caller so a failing run can be replayed. */
export function fuzzSeed(): number {
  const fromEnv = process.env.VOLLEY_FUZZ_SEED;
  if (fromEnv !== undefined && /^\d+$/.test(fromEnv)) return Number(fromEnv) >>> 0;
  return (Math.random() * 4294967296) >>> 0;
}
