// How `volley drain` reads "events still waiting" from its MTA: an admin API
// on loopback that serves a real event dispatcher's status (GET
// /events/status, as admin-server.ts does). An event written to the log and
// not yet read by the dispatcher (its next poll) is waiting too, however its
// size compares to the average line: the drain must not stop the MTA and
// retire the node with it still on the disk.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { MtaControl } from '../../../../../runtime/mta/drain/source/mta-control';
import { Dispatcher } from '../../../../../runtime/mta/events/dispatcher';
import { EventLog } from '../../../../../runtime/mta/events/event-log';
import type { NewEvent } from '../../../../../runtime/mta/events/types';
import { MemorySink } from '../../../../helpers/event-sink';
import { tempDir } from '../../../../helpers/tmp';

const root = tempDir('volley-drain-control-');

test('one short event the dispatcher has not read yet counts as waiting (the estimate from bytes rounds it to 0)', async () => {
  const dir = join(root, 'events');
  const log = new EventLog({ dir, name: 'w0', maxSize: 1 << 30, maxAgeMs: 3_600_000, fsync: false });
  const short = { time: new Date().toISOString(), event: 'delivery', status: 'deferred', message_id: 'm1', attempt: 1, sender: 's@x.test', recipient: 'r@y.test', domain: 'y.test', size: 10 } as NewEvent;
  await log.write([short]);
  // Not started: its next poll has not come yet (the window right after the last attempts finished).
  const dispatcher = new Dispatcher({ sink: new MemorySink('hook', 'dead'), dir, position: {}, logger: pino({ level: 'silent' }) });
  const status = await dispatcher.status();
  expect(status.waitingBytes).toBeGreaterThan(0);
  const admin: Server = createServer((_req, res) => {
    void dispatcher.status().then((s) => res.end(JSON.stringify({ sinks: [s] })));
  });
  await new Promise<void>((resolve) => admin.listen(0, '127.0.0.1', resolve));
  try {
    const control = new MtaControl({ adminUrl: `http://127.0.0.1:${(admin.address() as AddressInfo).port}`, headers: {}, persistentPath: root });
    const ev = await control.eventsWaiting();
    expect(ev.waiting).toBeGreaterThan(0);
  } finally {
    admin.closeAllConnections();
    await new Promise((resolve) => admin.close(resolve));
    await dispatcher.close();
    await log.close();
  }
});
