// What a stopped MTA's event log still owes its sinks, read from disk by
// `volley drain` when the MTA is not running: a batch sink's durable cursor
// short of the log's end (bytes), nothing for a sink at the end or one that
// never ran (it starts at the end), and for an s3 sink every non-empty file
// S3 does not hold (the e2e of that is test/bin/commands/drain-s3-events.test.ts).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { eventsLeftOnDisk } from '../../../../../runtime/mta/drain/source/events-on-disk';
import { CursorStore } from '../../../../../runtime/mta/events/cursor-store';
import { EventLog, eventsDir } from '../../../../../runtime/mta/events/event-log';
import { endCursor } from '../../../../../runtime/mta/events/log-reader';
import type { NewEvent } from '../../../../../runtime/mta/events/types';
import type { SinkConfig } from '../../../../../runtime/shared/config/events';
import { tempDir } from '../../../../helpers/tmp';

const root = tempDir('volley-drain-events-');
const logger = pino({ level: 'silent' });
const hook = { type: 'webhook', name: 'hook' } as SinkConfig;
const never = { type: 'webhook', name: 'never-ran' } as SinkConfig;
const archive = { type: 's3', name: 'archive', ship: ['events'] } as SinkConfig;
const event = (n: number): NewEvent => ({ time: new Date().toISOString(), event: 'delivery', status: 'delivered', message_id: `m${n}`, attempt: 1, sender: 's@x.test', recipient: `r${n}@y.test`, domain: 'y.test', size: 10 }) as NewEvent;

test('a batch sink behind the end of the log is owed the bytes it has not acknowledged; at the end, or never run, nothing', async () => {
  const pp = join(root, 'batch');
  const log = new EventLog({ dir: eventsDir(pp), name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  await log.write([event(1)]);
  const cursors = new CursorStore(eventsDir(pp));
  await cursors.save('hook', endCursor(eventsDir(pp)));
  expect(await eventsLeftOnDisk(pp, [hook, never], logger)).toEqual([]);
  await log.write([event(2)]);
  await log.close();
  const left = await eventsLeftOnDisk(pp, [hook, never], logger);
  expect(left).toEqual([{ sink: 'hook', bytes: expect.any(Number) }]);
  expect(left[0].bytes).toBeGreaterThan(0);
});

test('an s3 sink is owed every non-empty event file not in shipped.json, the open one included; the closed one shipped, only the open one', async () => {
  const pp = join(root, 's3');
  const dir = eventsDir(pp);
  const log = new EventLog({ dir, name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  await log.write([event(1)]);
  await log.closeCurrent();
  await log.write([event(2)]);
  await log.close();
  expect(await eventsLeftOnDisk(pp, [archive], logger)).toEqual([{ sink: 'archive', files: 2 }]);
  const closed = log.closedFiles().map((f) => f.slice(dir.length + 1));
  writeFileSync(join(dir, 'shipped.json'), JSON.stringify(closed));
  expect(await eventsLeftOnDisk(pp, [archive], logger)).toEqual([{ sink: 'archive', files: 1 }]);
});
