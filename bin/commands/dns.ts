import type { Command } from 'commander';

// Placeholder while the infrastructure work lands; replaced by the real verb.
export function registerDns(program: Command): void {
  program.command('dns').description('(not yet available)').action(() => {
    throw new Error('volley dns is not available yet');
  });
}
