import type { Command } from 'commander';
import { loadProxyConfig, proxyServerOptions } from '../../runtime/proxy/config';
import { ProxyServer } from '../../runtime/proxy/server';
import { createLogger } from '../../runtime/shared/log';
import { parseHostPort } from './flags';

interface ProxyFlags {
  config: string;
  listen?: string;
}

export function registerProxy(program: Command): void {
  program
    .command('proxy')
    .description('run a proxy: hold sending IPs and open MX sessions from them for authenticated MTAs')
    .option('--config <file>', 'the proxy config file', process.env.VOLLEY_PROXY_CONFIG ?? '/etc/volley/proxy.yaml')
    .option('--listen <addr:port>', 'override the configured listen address')
    .action(async (flags: ProxyFlags) => {
      const config = loadProxyConfig(flags.config);
      if (flags.listen) config.listen = parseHostPort(flags.listen, '0.0.0.0');
      const logger = createLogger({ level: config.logLevel, name: 'proxy' });
      const server = new ProxyServer(proxyServerOptions(config, logger));
      await server.start();
      const stop = (signal: string): void => {
        logger.info({ signal }, 'proxy: stopping');
        void server.stop().then(() => {
          logger.flush();
          process.exit(0);
        });
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
}
