// Runs at most `limit` report parses at once; the others wait their turn in
// arrival order. Their SMTP sessions simply wait for the answer to DATA, as
// they already do for the durable write.

export class ParseQueue {
  private running = 0;
  private readonly queue: (() => void)[] = [];

  constructor(
    private readonly limit: number,
    /** Told when a report starts or stops waiting (+1 / -1): the waiting gauge. */
    private readonly onWaiting: (delta: number) => void = () => undefined,
  ) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) {
      this.onWaiting(1);
      // The slot is handed over by the one that finishes (running is not decremented in between).
      await new Promise<void>((resolve) => this.queue.push(resolve));
      this.onWaiting(-1);
    } else {
      this.running++;
    }
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.running--;
    }
  }

  get waiting(): number {
    return this.queue.length;
  }
}
