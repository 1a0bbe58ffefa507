import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readAttempts } from './attempt-log';
import { tempDir } from './tmp';

const root = tempDir();

test('a line the MTA is still appending is left for the next read, not parsed half-way', () => {
  const dir = join(root, 'attempts');
  mkdirSync(join(dir, 'cursors'), { recursive: true }); // beside the event files: not read
  writeFileSync(join(dir, 'skipped.jsonl'), '{"n":0}\n');
  writeFileSync(join(dir, 'w0.20261205T000000000Z-000001.jsonl'), '{"n":1}\n{"n":2}\n');
  writeFileSync(join(dir, 'w0.20261205T000100000Z-000002.jsonl'), '{"n":3}\n{"n":4,"smtp_te');
  expect(readAttempts<{ n: number }>(dir).map((e) => e.n)).toEqual([1, 2, 3]);
  writeFileSync(join(dir, 'w0.20261205T000100000Z-000002.jsonl'), '{"n":3}\n{"n":4,"smtp_text":"ok"}\n');
  expect(readAttempts<{ n: number }>(dir).map((e) => e.n)).toEqual([1, 2, 3, 4]);
  expect(readAttempts(join(dir, 'missing'))).toEqual([]);
});
