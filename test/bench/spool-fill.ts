// Fills a persistent path's spool with queued messages straight through the
// spool's own writer (fsync off: set-up, not a measurement): a million 2 KB
// messages in a minute or so, where SMTP would take several. Every message
// is deferred a day, so an MTA started on the path holds them all queued.
import { join } from 'node:path';
import { newMessageId } from '../../runtime/mta/message-id';
import { SpoolPartition } from '../../runtime/mta/spool/partition';
import type { Envelope } from '../../runtime/mta/spool/types';

/** Writes `count` messages of `sizeBytes` over `workers` partitions under `persistentPath`. */
export async function fillSpool(persistentPath: string, count: number, workers: number, sizeBytes = 2048): Promise<void> {
  const body = Buffer.alloc(sizeBytes, 'x');
  const parts = await Promise.all(Array.from({ length: workers }, (_, w) => SpoolPartition.open({ dir: join(persistentPath, 'spool', `p${String(w).padStart(3, '0')}`), fsync: false })));
  const now = Date.now();
  for (let i = 0; i < count; i += 1000) {
    await Promise.all(
      Array.from({ length: Math.min(1000, count - i) }, (_, k) => {
        const n = i + k;
        const env: Envelope = { id: newMessageId(), from: 'bulk@bench.example', to: [`r${n}@d${n % 1000}.example`], received: now, via: 'smtp', next: now + 86_400_000, size: body.length };
        return parts[n % workers].appendMessage(env, body);
      }),
    );
  }
  await Promise.all(parts.map((p) => p.close()));
}
