// A bounded memory of messages by digest: whether these exact bytes were
// seen before. The inbound listener uses it to tell a report that killed the
// parse thread once (refused 451: the sender retries) from one that kills it
// every time (kept for an operator instead). Oldest forgotten first; a
// restart forgets all, which only costs one more retry of such a report.
import { createHash } from 'node:crypto';

export class SeenDigests {
  private readonly digests = new Set<string>();

  constructor(private readonly max: number) {}

  /** True when `raw` was given before (and is still remembered); remembers it otherwise. */
  again(raw: Buffer): boolean {
    const d = createHash('sha256').update(raw).digest('base64');
    if (this.digests.has(d)) return true;
    this.digests.add(d);
    // A Set iterates in insertion order: the first is the oldest.
    if (this.digests.size > this.max) this.digests.delete(this.digests.values().next().value!);
    return false;
  }
}
