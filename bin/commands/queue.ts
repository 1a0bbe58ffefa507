import type { Command } from 'commander';
import { adminUrl } from './flags';

export function registerQueue(program: Command): void {
  program
    .command('queue')
    .description('show the queue of a running MTA')
    .option('--admin <addr:port>', 'the MTA admin address')
    .action(async (flags: { admin?: string }) => {
      const res = await fetch(`${adminUrl(flags.admin)}/queue`);
      process.stdout.write(`${JSON.stringify(await res.json(), null, 2)}\n`);
      if (!res.ok) process.exitCode = 1;
    });
}
