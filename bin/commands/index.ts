import type { Command } from 'commander';
import { registerBootstrap } from './bootstrap';
import { registerConfig } from './config';
import { registerDns } from './dns';
import { registerDrainSecret } from './drain-secret';
import { registerEvents } from './events';
import { registerDrain } from './drain';
import { registerHaproxyConfig } from './haproxy-config';
import { registerLb } from './lb';
import { registerLocal } from './local';
import { registerMirror } from './mirror';
import { registerMirrorSecret } from './mirror-secret';
import { registerMta } from './mta';
import { registerProxy } from './proxy';
import { registerProxyLink } from './proxy-link';
import { registerQueue } from './queue';
import { registerSecretFiles } from './secret-files';

export function registerCommands(program: Command): void {
  registerMta(program);
  registerConfig(program);
  registerQueue(program);
  registerEvents(program);
  registerLb(program);
  registerProxy(program);
  registerHaproxyConfig(program);
  registerLocal(program);
  registerBootstrap(program);
  registerDns(program);
  registerProxyLink(program);
  registerDrainSecret(program);
  registerDrain(program);
  registerMirror(program);
  registerMirrorSecret(program);
  registerSecretFiles(program);
}
