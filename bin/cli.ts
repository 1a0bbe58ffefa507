// The one `volley` command: a verb per job. Each verb lives in bin/commands/
// and only parses flags before handing an options object to its daemon.
// Loaded by bin/volley.ts in the main thread.
import { Command } from 'commander';
import { registerCommands } from './commands';

const program = new Command('volley')
  .description('Volley: an MTA fleet you run yourself')
  .showHelpAfterError();

registerCommands(program);

program.parseAsync(process.argv).catch((err: Error & { code?: string }) => {
  process.stderr.write(`volley: ${err.message}${err.code ? ` (${err.code})` : ''}\n`);
  process.exit(1);
});
