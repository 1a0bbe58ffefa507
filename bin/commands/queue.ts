import type { Command } from 'commander';
import { adminHeaders } from './admin-token';
import { adminUrl } from './flags';

export function registerQueue(program: Command): void {
  program
    .command('queue [action]')
    .description('show the queue (counts per domain, VMTA and state); pause|resume|retry|purge [--domain D] [--vmta V] [--id ID]; show --id ID')
    .option('--admin <addr:port>', 'the MTA admin address')
    .option('--domain <domain>', 'only this recipient domain')
    .option('--vmta <name>', 'only this virtual MTA')
    .option('--id <id>', 'only this message')
    .option('--token-file <file>', 'the admin token (default: VOLLEY_ADMIN_TOKEN)')
    .action(async (action: string | undefined, flags: { admin?: string; domain?: string; vmta?: string; id?: string; tokenFile?: string }) => {
      const actions = ['pause', 'resume', 'retry', 'purge', 'show'];
      if (action !== undefined && !actions.includes(action)) throw new Error(`unknown queue action "${action}" (${actions.join(', ')})`);
      const q = new URLSearchParams();
      for (const k of ['domain', 'vmta', 'id'] as const) if (flags[k]) q.set(k, flags[k]!);
      const base = adminUrl(flags.admin);
      if (action === 'show' && !flags.id) throw new Error('queue show needs --id');
      const url = action === 'show' ? `${base}/queue/messages/${flags.id}` : `${base}/queue${action ? `/${action}` : ''}?${q}`;
      const res = await fetch(url, { method: action && action !== 'show' ? 'POST' : 'GET', headers: adminHeaders(flags.tokenFile) });
      process.stdout.write(`${JSON.stringify(await res.json(), null, 2)}\n`);
      if (!res.ok) process.exitCode = 1;
    });
}
