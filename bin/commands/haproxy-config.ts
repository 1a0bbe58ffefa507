import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { haproxyConfig } from '../../runtime/mta/delivery/connect/haproxy-config';
import { ConfigError, loadConfig } from '../../runtime/shared/config/load';

export function registerHaproxyConfig(program: Command): void {
  program
    .command('haproxy-config')
    .description('write the HAProxy configuration for HAProxy mode (one frontend per sending IP in haproxy.frontends)')
    .requiredOption('--config <file>', 'the Volley config file')
    .option('--out <file>', 'write here instead of stdout')
    .action((flags: { config: string; out?: string }) => {
      let text: string;
      try {
        const config = loadConfig(flags.config);
        if (!config.haproxy || config.haproxy.frontends.length === 0) {
          process.stderr.write(`${flags.config}: no haproxy.frontends configured\n`);
          process.exitCode = 1;
          return;
        }
        text = haproxyConfig(config);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        process.stderr.write(`${err.message}\n`);
        process.exitCode = 1;
        return;
      }
      if (flags.out) {
        writeFileSync(flags.out, text);
        process.stdout.write(`${flags.out}: ${text.split('\nfrontend ').length - 1} frontends\n`);
      } else process.stdout.write(text);
    });
}
