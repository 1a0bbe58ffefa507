import type { Command } from 'commander';
import { ProxyDaemon } from '../../runtime/proxy/daemon';
import { createLogger } from '../../runtime/shared/log';
import { parseHostPort } from '../../runtime/shared/host-port';

interface ProxyFlags {
  config: string;
  listen?: string;
}

export function registerProxy(program: Command): void {
  program
    .command('proxy')
    .description('run a proxy: hold sending IPs and open MX sessions from them for authenticated MTAs (SIGHUP reloads the config)')
    .option('--config <file>', 'the proxy config file', process.env.VOLLEY_PROXY_CONFIG ?? '/etc/volley/proxy.yaml')
    .option('--listen <addr:port>', 'override the configured listen address')
    .action(async (flags: ProxyFlags) => {
      const daemon = new ProxyDaemon({
        configFile: flags.config,
        listen: flags.listen ? parseHostPort(flags.listen, '0.0.0.0') : undefined,
        logger: (config) => createLogger({ level: config.logLevel, name: 'proxy' }),
      });
      const logger = daemon.log;
      // Before start: a SIGHUP's default action kills the process, and systemd
      // does not restart a unit that died of SIGHUP. One during start waits its turn.
      process.on('SIGHUP', () => void daemon.reload());
      let stopping = false;
      const stop = (signal: string): void => {
        // A second signal changes nothing, as for the MTA: Ctrl-C under `volley
        // local` sends SIGINT from the terminal and SIGTERM from volley local,
        // and the grace is bounded anyway (systemd SIGKILLs after TimeoutStopSec).
        if (stopping) return void logger.info({ signal }, 'proxy: already stopping, transactions in flight still finish');
        stopping = true;
        logger.info({ signal }, 'proxy: stopping (transactions in flight may finish)');
        daemon.stop().then(
          () => {
            logger.info('proxy: stopped');
            logger.flush();
            process.exit(0);
          },
          (err: Error) => {
            logger.error({ err }, 'proxy: stop failed');
            logger.flush();
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      await daemon.start();
    });
}
