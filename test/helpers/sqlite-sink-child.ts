// A child process for the SQLite sink's crash test: writes numbered batches of
// events into a sink and prints `ack <n>` once each deliver() resolved, then
// waits to be killed (SIGKILL, no close()). Run with `node --import tsx`.
//   sqlite-sink-child.ts <dir> <batches> <batch size>

import pino from 'pino';
import { createSqliteSink } from '../../runtime/mta/events/sinks/sqlite';
import { sampleBatch } from './sqlite-events';

async function main(): Promise<void> {
  const [dir, batches, size] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
  const sink = createSqliteSink({ type: 'sqlite', name: 'acct', dir, maxSize: 1024 ** 3, maxAgeMs: 3_600_000 }, { persistentPath: dir, nodeId: 'n1', logger: pino({ level: 'silent' }) });
  for (let n = 0; n < batches; n++) {
    await sink.deliver(sampleBatch(n, size));
    process.stdout.write(`ack ${n}\n`);
  }
  // Stay alive, file open, until the test kills us: a crash, not a shutdown.
  setInterval(() => undefined, 60_000);
}

void main();
