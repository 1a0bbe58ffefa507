// What a stopped MTA left in its event log for its sinks. `volley drain` on
// an MTA that is not running cannot wait for its events (nothing is there to
// deliver them), so it looks on disk instead: a batch sink (webhook, sqlite)
// whose durable cursor is short of the log's end, or an s3 sink that ships
// events and does not hold every non-empty event file yet. Whatever it finds
// would be lost with the node once it is retired.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { SinkConfig } from '../../../shared/config/events';
import { CursorStore } from '../../events/cursor-store';
import { eventsDir, listEventFiles } from '../../events/event-log';
import { compareFiles } from '../../events/log-reader';
import { Retention } from '../../events/retention';
import type { Logger } from 'pino';

/** A sink with events still owed to it: bytes of the log it has not acknowledged, or files S3 does not hold. */
export interface EventsLeft {
  sink: string;
  bytes?: number;
  files?: number;
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

export async function eventsLeftOnDisk(persistentPath: string, sinks: readonly SinkConfig[], logger: Logger): Promise<EventsLeft[]> {
  const dir = eventsDir(persistentPath);
  const files = listEventFiles(dir);
  const out: EventsLeft[] = [];
  const cursors = new CursorStore(dir);
  for (const s of sinks) {
    if (s.type === 's3') {
      if (!s.ship.includes('events')) continue;
      // Closed files S3 does not hold, and each producer's last (open) file when it holds anything:
      // no MTA runs to close it and hand it to the shipper.
      const retention = new Retention({ dir, logger, positions: () => [], hasBatchSinks: false, shipsEvents: true, keepLocal: true });
      const closed = (await retention.closedFiles()).filter((f) => sizeOf(f) > 0).length;
      const open = [...files.values()].filter((list) => sizeOf(join(dir, list.at(-1)!.name)) > 0).length;
      if (closed + open > 0) out.push({ sink: s.name, files: closed + open });
      continue;
    }
    // A sink that never ran starts at the end of the log when it first does: nothing here is owed to it.
    const cursor = cursors.load(s.name);
    if (!cursor) continue;
    let bytes = 0;
    for (const [producer, list] of files) {
      const at = cursor[producer];
      for (const f of list) {
        if (at && compareFiles(f.name, at.file) < 0) continue;
        bytes += Math.max(0, sizeOf(join(dir, f.name)) - (at && f.name === at.file ? at.offset : 0));
      }
    }
    if (bytes > 0) out.push({ sink: s.name, bytes });
  }
  return out;
}
