import type { Command } from 'commander';

// Placeholder while the infrastructure work lands; replaced by the real verb.
export function registerBootstrap(program: Command): void {
  program.command('bootstrap').description('(not yet available)').action(() => {
    throw new Error('volley bootstrap is not available yet');
  });
}
