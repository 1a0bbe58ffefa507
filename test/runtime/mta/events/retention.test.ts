// Retention of closed event-log files (runtime/mta/events/retention.ts): what
// is deleted, and that a reader appearing during a sweep keeps what it needs.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { eventFileName } from '../../../../runtime/mta/events/event-log';
import type { Cursor } from '../../../../runtime/mta/events/log-reader';
import { Retention } from '../../../../runtime/mta/events/retention';
import { tempDir } from '../../../helpers/tmp';

const root = tempDir();

test('a replay that starts while a sweep is deleting keeps the files it starts from', async () => {
  const dir = join(root, 'replay-during-sweep');
  mkdirSync(dir, { recursive: true });
  const t = Date.UTC(2026, 11, 5);
  const names = [1, 2, 3, 4].map((seq) => eventFileName('w0', t + seq * 60_000, seq));
  for (const n of names) writeFileSync(join(dir, n), '{"event":"delivery"}\n');
  // The sink has read everything closed. Like the event service, positions() builds a new list at each call.
  const positions: Cursor[] = [{ w0: { file: names[3], offset: 0 } }];
  const retention = new Retention({ dir, logger: pino({ level: 'silent' }), positions: () => [...positions], hasBatchSinks: true, shipsEvents: false, keepLocal: false });
  const sweeping = retention.sweep();
  // While the sweep waits on its first deletion, an operator's replay starts from the second file.
  positions.push({ w0: { file: names[1], offset: 0 } });
  await sweeping;
  expect(names.map((n) => existsSync(join(dir, n)))).toEqual([false, true, true, true]);
});
