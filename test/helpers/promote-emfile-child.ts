// A child process for promote_command's EMFILE test: takes every file
// descriptor this process may open (run it under `prlimit --nofile=N`), then
// runs promote_command and prints its result as one JSON line. A crash
// (an uncaught error) shows as a non-zero exit and no line. Run with
// `node --import tsx`.
import { takeEveryDescriptor } from './descriptors';
import pino from 'pino';
import { runPromoteCommand } from '../../runtime/mirror/promote-command';

async function main(): Promise<void> {
  const logger = pino({ level: 'silent' });
  const held = takeEveryDescriptor();
  if (held.length === 0) throw new Error('no descriptor could be opened: not an EMFILE from the spawn');
  const r = await runPromoteCommand(['/bin/true'], 3, logger);
  process.stdout.write(`${JSON.stringify(r)}\n`);
}

void main();
