// A due message becomes an attempt: its recipients split into one job per
// destination domain (one per recipient where VERP names each), each queued
// for its (VMTA, domain). Owns that split and the attempt it starts; the
// queues are queues/' and the jobs' outcomes come back to the recorder.
import type { SpoolPartition } from '../../spool/partition';
import type { SpoolEntry } from '../../spool/types';
import type { Destinations } from '../queues/destinations';
import type { VmtaPicker } from '../routing/vmta-picker';
import type { Attempt, AttemptRecorder } from './attempt-recorder';
import type { Verp } from './verp';

export interface AttemptSetup {
  picker: VmtaPicker;
  verp?: Verp;
  destinations: Destinations;
  recorder: AttemptRecorder;
}

export function beginAttempt(entry: SpoolEntry, partition: SpoolPartition, o: AttemptSetup): void {
  const byDomain = new Map<string, string[]>();
  for (const rcpt of entry.to) {
    const d = rcpt.slice(rcpt.lastIndexOf('@') + 1).toLowerCase();
    const list = byDomain.get(d);
    if (list) list.push(rcpt);
    else byDomain.set(d, [rcpt]);
  }
  const attempt: Attempt = { entry, partition, pending: byDomain.size, finished: [], deferred: [], events: [] };
  if (byDomain.size === 0) return o.recorder.completeEmpty(attempt);
  const source = o.picker.pick(entry);
  // VERP names one recipient per return path, so each recipient is a
  // transaction of its own: N recipients at one domain cost N transactions
  // (N message permits of the throttle, N bodies on the wire) instead of
  // one. Never for the null sender: a bounce must not be bounced.
  const verp = o.verp;
  if (verp && entry.from !== '' && verp.covers(source.pool ?? entry.pool) && verp.names(entry.id)) {
    attempt.pending = entry.to.length;
    for (const [domain, rcpts] of byDomain) {
      for (const rcpt of rcpts) o.destinations.push(`${source.vmta ?? '-'}|${domain}`, domain, source, { attempt, domain, rcpts: [rcpt], mailFrom: verp.address(entry.id, rcpt) });
    }
    return;
  }
  for (const [domain, rcpts] of byDomain) o.destinations.push(`${source.vmta ?? '-'}|${domain}`, domain, source, { attempt, domain, rcpts });
}
