import type { Command } from 'commander';
import { adminUrl } from './flags';

export function registerQueue(program: Command): void {
  program
    .command('queue [action]')
    .description('show the queue of a running MTA; `pause` holds all delivery, `resume` releases it')
    .option('--admin <addr:port>', 'the MTA admin address')
    .action(async (action: string | undefined, flags: { admin?: string }) => {
      if (action !== undefined && action !== 'pause' && action !== 'resume') throw new Error(`unknown queue action "${action}" (pause, resume)`);
      const res = await fetch(`${adminUrl(flags.admin)}/queue${action ? `/${action}` : ''}`, { method: action ? 'POST' : 'GET' });
      process.stdout.write(`${JSON.stringify(await res.json(), null, 2)}\n`);
      if (!res.ok) process.exitCode = 1;
    });
}
