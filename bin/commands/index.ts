import type { Command } from 'commander';
import { registerBootstrap } from './bootstrap';
import { registerDns } from './dns';

export function registerCommands(program: Command): void {
  registerBootstrap(program);
  registerDns(program);
}
