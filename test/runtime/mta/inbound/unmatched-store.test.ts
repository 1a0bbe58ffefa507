import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UnmatchedStore } from '../../../../runtime/mta/inbound/unmatched-store';
import { captureLogger } from '../../../helpers/proxy-fixtures';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();

test('bounded in bytes: past unmatched_max the oldest files go, each with a log line; what an earlier run left counts', async () => {
  const folder = join(dir, 'unmatched');
  const log = captureLogger();
  let t = Date.parse('2026-12-01T00:00:00Z');
  const clock = (): number => (t += 1000);
  const first = new UnmatchedStore(folder, 250, log.logger, clock);
  const a = await first.store(Buffer.alloc(100, 'a'));
  const b = await first.store(Buffer.alloc(100, 'b'));
  expect(readdirSync(folder).sort()).toEqual([a, b]);
  expect(a).toMatch(/^20261201T000001000Z-[0-9a-f]{12}\.eml$/);

  // A restart: the two files already there count against the bound.
  const second = new UnmatchedStore(folder, 250, log.logger, clock);
  await second.init();
  expect(second.bytes).toBe(200);
  const c = await second.store(Buffer.alloc(100, 'c'));
  expect(readdirSync(folder).sort()).toEqual([b, c]);
  expect(second.bytes).toBe(200);
  const removed = log.lines().filter((l) => l.msg === 'inbound: unmatched/ is over inbound.unmatched_max: removed its oldest file');
  expect(removed.map((l) => l.file)).toEqual([a]);
  // No temporary file is left behind, and nothing else in the folder is counted.
  writeFileSync(join(folder, 'README'), 'x'.repeat(1000));
  const third = new UnmatchedStore(folder, 250, log.logger, clock);
  await third.init();
  expect(third.bytes).toBe(200);
  expect(readdirSync(folder).filter((f) => f.startsWith('.'))).toEqual([]);
});
