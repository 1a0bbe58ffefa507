import cluster from 'node:cluster';
import type { Command } from 'commander';
import { DEFAULTS, readLbFile, resolveOptions, type LbFlags } from '../../runtime/lb/options';
import { defaultLbWorkers, runLbPrimary } from '../../runtime/lb/primary';
import { runLbWorker } from '../../runtime/lb/worker';
import { VolleyError } from '../../runtime/shared/errors';
import { createLogger } from '../../runtime/shared/log';

interface LbCliFlags extends Omit<LbFlags, 'listeners' | 'noAdmin' | 'admin'> {
  config?: string;
  listen?: true;
  backend?: true;
  admin?: string | false;
  logLevel?: string;
  workers?: string;
}

export function registerLb(program: Command): void {
  // A --backend belongs to the --listen before it (those before any --listen, to the first one).
  const listeners: { listen: string; backends: string[] }[] = [];
  const orphans: string[] = [];
  program
    .command('lb')
    .description('run the SMTP-aware TCP load balancer in front of MTAs (retries while the client waits, health checks, PROXY protocol)')
    .option('--config <file>', 'a YAML file (listeners, backends, health checks, timeouts); flags win over it')
    .option('--listen <addr:port[=smtp|tcp][+proxy]>', 'a front port; smtp (default) waits for the backend\'s 220, tcp is plain (the HTTP API); +proxy sends the PROXY header on this one; repeatable', (v: string) => {
      listeners.push({ listen: v, backends: [] });
      return true;
    })
    .option('--backend <host:port>', 'an MTA behind the --listen before it; repeatable', (v: string) => {
      (listeners.at(-1)?.backends ?? orphans).push(v);
      return true;
    })
    .option('--proxy-protocol', 'send a PROXY protocol v1 header with the client\'s address to the MTAs, on every listener')
    .option('--source-address <ip>', 'connect to the MTAs (sessions and checks) from this local address')
    .option('--admin <addr:port>', `the admin port: /healthz /readyz /status /metrics (default ${DEFAULTS.adminAddress})`)
    .option('--no-admin', 'no admin port')
    .option('--health-interval <duration>', `time between health checks of a backend (default ${DEFAULTS.healthInterval})`)
    .option('--health-timeout <duration>', `bound on one check: connect and greeting (default ${DEFAULTS.healthTimeout})`)
    .option('--fall <n>', `consecutive failures that take a backend out (default ${DEFAULTS.fall})`)
    .option('--rise <n>', `consecutive passed checks that bring it back (default ${DEFAULTS.rise})`)
    .option('--connect-timeout <duration>', `bound on connecting to a backend (default ${DEFAULTS.connectTimeout})`)
    .option('--greeting-timeout <duration>', `bound on a backend's 220 after connecting (default ${DEFAULTS.greetingTimeout})`)
    .option('--max-connections <n>', `client connections at once (default ${DEFAULTS.maxConnections})`)
    .option('--max-connections-per-client <n>', `of those, from one client address (default ${DEFAULTS.maxConnectionsPerClient})`)
    .option('--idle-timeout <duration>', `close a session with no traffic for this long (default ${DEFAULTS.idleTimeout})`)
    .option('--drain-timeout <duration>', `on SIGTERM/SIGINT, how long open sessions may finish (default ${DEFAULTS.drainTimeout})`)
    .option('--workers <n>', 'worker processes accepting on the shared ports (default: one per core)')
    .option('--log-level <level>', 'pino level (default: VOLLEY_LOG_LEVEL or info)')
    .action(async (flags: LbCliFlags) => {
      if (cluster.isWorker && process.env.VOLLEY_LB_WORKER !== undefined) {
        // The options come from the primary (its last reload), never from the flags and file again.
        await runLbWorker(createLogger({ name: `lb-w${process.env.VOLLEY_LB_WORKER}`, level: flags.logLevel }));
        return;
      }
      if (orphans.length > 0) {
        if (listeners.length === 0) throw new VolleyError('EBADFLAG', '--backend belongs to a --listen: give --listen first');
        listeners[0].backends.unshift(...orphans);
      }
      const workers = flags.workers === undefined ? defaultLbWorkers() : Number(flags.workers);
      if (!Number.isInteger(workers) || workers < 1) throw new VolleyError('EBADFLAG', `--workers: "${flags.workers}" is not a whole number ≥ 1`);
      // What SIGHUP runs again: the file re-read, the same flags over it.
      const load = (): ReturnType<typeof resolveOptions> =>
        resolveOptions(
          {
            ...flags,
            listeners,
            admin: typeof flags.admin === 'string' ? flags.admin : undefined,
            noAdmin: flags.admin === false,
          },
          flags.config ? readLbFile(flags.config) : undefined,
        );
      await runLbPrimary(load(), { workers, load, logger: createLogger({ name: 'lb', level: flags.logLevel }) });
    });
}
