import cluster from 'node:cluster';
import type { Command } from 'commander';
import { runPrimary } from '../../runtime/mta/primary';
import { startWorker } from '../../runtime/mta/worker';
import { createLogger } from '../../runtime/shared/log';
import { parseHostPort } from '../../runtime/shared/host-port';
import { collectNamed } from './flags';

interface MtaFlags {
  config: string;
  persistentPath: string;
  nodeId?: string;
  workers?: string;
  smtpListen?: Record<string, { address: string; port: number }>;
  httpListen?: string;
  adminListen?: string;
}

export function registerMta(program: Command): void {
  program
    .command('mta')
    .description('run an MTA: SMTP and HTTP injection, the durable spool, delivery, the admin port')
    .option('--config <file>', 'the Volley config file', process.env.VOLLEY_CONFIG ?? '/etc/volley/volley.yaml')
    .option('--persistent-path <dir>', 'where everything that must survive lives', process.env.VOLLEY_PERSISTENT_PATH ?? '/var/lib/volley')
    .option('--node-id <id>', 'this node\'s name (kept on the persistent path)', process.env.VOLLEY_NODE_ID)
    .option('--workers <n>', 'worker processes (default: one per core but one)', process.env.VOLLEY_WORKERS)
    .option('--smtp-listen <name=addr:port>', 'override a configured SMTP listener (repeatable)', collectNamed)
    .option('--http-listen <addr:port>', 'override the HTTP API address')
    .option('--admin-listen <addr:port>', 'override the admin address')
    .action(async (flags: MtaFlags) => {
      const binds = { smtp: flags.smtpListen ?? {}, http: flags.httpListen ? parseHostPort(flags.httpListen, '0.0.0.0') : undefined };
      if (cluster.isWorker) {
        // The config comes from the primary, never the file: see startWorker.
        const worker = Number(process.env.VOLLEY_WORKER);
        await startWorker({
          persistentPath: flags.persistentPath,
          nodeId: process.env.VOLLEY_NODE_ID ?? 'unknown',
          worker,
          workers: Number(process.env.VOLLEY_WORKERS),
          binds,
          logger: (config) => createLogger({ level: config.log.level, name: `mta-w${worker}` }),
        });
        return;
      }
      await runPrimary({
        configPath: flags.config,
        persistentPath: flags.persistentPath,
        nodeId: flags.nodeId,
        workers: flags.workers ? Number(flags.workers) : undefined,
        binds,
        admin: flags.adminListen ? parseHostPort(flags.adminListen) : undefined,
        logger: createLogger({ name: 'mta' }),
      });
    });
}
