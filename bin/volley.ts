// The one `volley` command: a verb per job. Each verb lives in bin/commands/
// and only parses flags before handing an options object to its daemon.
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Command } from 'commander';
import { isQueueThreadData, runQueueThread } from '../runtime/mta/queue-thread';
import { registerCommands } from './commands';

function main(): void {
  const program = new Command('volley')
    .description('Volley: an MTA fleet you run yourself')
    .showHelpAfterError();
  registerCommands(program);
  program.parseAsync(process.argv).catch((err: Error & { code?: string }) => {
    process.stderr.write(`volley: ${err.message}${err.code ? ` (${err.code})` : ''}\n`);
    process.exit(1);
  });
}

// The bundle is also the script of the MTA's queue thread (runtime/mta/queue-thread.ts).
if (!isMainThread && parentPort && isQueueThreadData(workerData)) {
  runQueueThread(parentPort, workerData).catch((err: Error) => {
    process.stderr.write(`volley: queue thread: ${err.message}\n`);
    process.exit(1);
  });
} else main();
