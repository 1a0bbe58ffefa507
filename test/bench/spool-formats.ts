import { mkdtempSync, rmSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SpoolPartition } from '../../runtime/mta/spool/partition';
import { newMessageId } from '../../runtime/mta/message-id';

// The spool format was chosen by this measurement: the same durable writes
// (2 KB, 20 writers at once, fsync before acknowledging) as an append-only
// segmented log with group commit, and as one file per message (Postfix's
// queue-file shape: create, write, fsync, rename into place).

async function withConcurrency(n: number, total: number, task: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: n }, async () => {
      for (let i = next++; i < total; i = next++) await task(i);
    }),
  );
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export async function measureSpoolFormats(messages = 20_000, writers = 20): Promise<{ logMsgsPerSec: number; filesMsgsPerSec: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-spool-bench-'));
  try {
    const body = Buffer.alloc(2048, 'm');
    const log = await SpoolPartition.open({ dir: join(dir, 'log') });
    const now = Date.now();
    const logS = await withConcurrency(writers, messages, async (i) => {
      await log.appendMessage({ id: newMessageId(), from: 'a@b.example', to: [`r${i}@c.example`], received: now, via: 'smtp', size: body.length }, body);
    });
    await log.close();

    const filesDir = join(dir, 'files');
    await (await import('node:fs/promises')).mkdir(filesDir);
    const filesS = await withConcurrency(writers, messages, async (i) => {
      const tmp = join(filesDir, `tmp.${i}`);
      const fh = await open(tmp, 'w');
      await fh.write(body);
      await fh.datasync();
      await fh.close();
      await rename(tmp, join(filesDir, `q.${i}`));
    });
    return { logMsgsPerSec: Math.round(messages / logS), filesMsgsPerSec: Math.round(messages / filesS) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
