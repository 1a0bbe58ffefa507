// attemptHistory, what `volley queue show <id>` lists: every event-log line of
// one message, oldest first, from the files under the persistent path.
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { attemptHistory } from '../../../../runtime/mta/admin/attempt-history';
import { eventFileName, eventsDir } from '../../../../runtime/mta/events/event-log';
import { tempDir } from '../../../helpers/tmp';

const root = tempDir('volley-attempt-history-');

test("a message's lines from every file, oldest first; other messages' lines and a torn last line skipped", async () => {
  const persistent = join(root, 'p1');
  const dir = eventsDir(persistent);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, eventFileName('w0', 0, 2)), `${JSON.stringify({ message_id: 'M1', time: '2026-12-05T10:00:02Z', type: 'delivered' })}\n{"message_id":"M1","ti`);
  writeFileSync(join(dir, eventFileName('w0', 0, 1)), `${JSON.stringify({ message_id: 'M1', time: '2026-12-05T10:00:01Z', type: 'deferred' })}\n${JSON.stringify({ message_id: 'M2', time: '2026-12-05T10:00:00Z' })}\n`);
  const found = (await attemptHistory(persistent, 'M1')) as { type: string }[];
  expect(found.map((e) => e.type)).toEqual(['deferred', 'delivered']);
});

test('a file gone between the listing and its opening (shipped and deleted meanwhile) is skipped, not a failed lookup', async () => {
  const persistent = join(root, 'p2');
  const dir = eventsDir(persistent);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, eventFileName('w0', 0, 1)), `${JSON.stringify({ message_id: 'M1', time: '2026-12-05T10:00:01Z', type: 'deferred' })}\n`);
  // Listed by readdir, gone at open (ENOENT): what the s3 sink's deletion does to a lookup in between.
  symlinkSync(join(dir, 'deleted-after-listing'), join(dir, eventFileName('w1', 0, 1)));
  const found = (await attemptHistory(persistent, 'M1')) as { type: string }[];
  expect(found.map((e) => e.type)).toEqual(['deferred']);
});
