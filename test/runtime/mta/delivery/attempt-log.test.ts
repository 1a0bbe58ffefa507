import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AttemptLog, type AttemptEvent } from '../../../../runtime/mta/delivery/attempt-log';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();
const event = (n: number): AttemptEvent => ({
  time: new Date(0).toISOString(), event: 'delivery', status: 'delivered', message_id: `m${n}`, attempt: 1,
  sender: 's@x.example', recipient: `r${n}@y.example`, domain: 'y.example', time_in_queue_ms: 5, size: 100,
});

test('one JSON line per event; a full file is closed and renamed, the next one started', async () => {
  const log = new AttemptLog({ dir, name: 'w0', maxSize: 600, maxAgeMs: 3_600_000 });
  for (let i = 0; i < 10; i++) await log.write([event(i)]);
  await log.close();
  const closed = log.closedFiles();
  expect(closed.length).toBeGreaterThanOrEqual(2);
  const lines = [...closed, log.currentPath].flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean));
  expect(lines.map((l) => (JSON.parse(l) as AttemptEvent).message_id)).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
  expect(closed.every((f) => f.startsWith(join(dir, 'w0.')) && !f.endsWith('.current.jsonl'))).toBe(true);
});

test('an old file is closed by age even when small', async () => {
  const sub = join(dir, 'age');
  const log = new AttemptLog({ dir: sub, name: 'w1', maxSize: 1 << 30, maxAgeMs: 50 });
  await log.write([event(1)]);
  await new Promise((r) => setTimeout(r, 80));
  await log.write([event(2)]);
  await log.close();
  expect(log.closedFiles()).toHaveLength(1);
});
