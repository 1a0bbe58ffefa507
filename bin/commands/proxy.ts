import cluster from 'node:cluster';
import type { Command } from 'commander';
import { createLogger } from '../../runtime/shared/log';
import { parseHostPort } from '../../runtime/shared/host-port';
import { parseWorkers, runProxyPrimary } from '../../runtime/proxy/primary';
import { runProxyWorker } from '../../runtime/proxy/worker';

interface ProxyFlags {
  config: string;
  listen?: string;
  workers?: string;
}

export function registerProxy(program: Command): void {
  program
    .command('proxy')
    .description('run a proxy: hold sending IPs and open MX sessions from them for authenticated MTAs (SIGHUP reloads the config)')
    .option('--config <file>', 'the proxy config file', process.env.VOLLEY_PROXY_CONFIG ?? '/etc/volley/proxy.yaml')
    .option('--listen <addr:port>', 'override the configured listen address')
    .option('--workers <n>', 'worker processes sharing the listener (default: one per core)', process.env.VOLLEY_PROXY_WORKERS)
    .action(async (flags: ProxyFlags) => {
      if (cluster.isWorker) {
        // The config comes from the primary, never the file: see runProxyWorker.
        const worker = Number(process.env.VOLLEY_PROXY_WORKER);
        runProxyWorker({ worker, logger: (config) => createLogger({ level: config.logLevel, name: `proxy-w${worker}` }) });
        return;
      }
      await runProxyPrimary({
        configFile: flags.config,
        listen: flags.listen ? parseHostPort(flags.listen, '0.0.0.0') : undefined,
        workers: parseWorkers(flags.workers),
        logger: (config) => createLogger({ level: config.logLevel, name: 'proxy' }),
      });
    });
}
