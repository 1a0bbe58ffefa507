import { join } from 'node:path';
import type { Command } from 'commander';
import { runLocalFleet } from '../../runtime/local/local-fleet';

export function registerLocal(program: Command): void {
  program
    .command('local')
    .description('run the local fleet on loopback (what `npm start` does)')
    .option('--config <file>', 'the config for the local MTAs', join(__dirname, '..', 'assets', 'config', 'local.yaml'))
    .option('--data <dir>', 'where the local nodes keep their persistent paths', '.volley-local')
    .option('--sink-port <port>', 'the embedded sink MX port', '2526')
    .option('--no-sink', 'do not start the embedded sink (something else listens on --sink-port, e.g. the benchmark\'s smtp-sink)')
    .option('--real-mx', 'deliver to real MX servers found through DNS instead of the sink')
    .option('--resolver <ip[:port]>', 'with --real-mx: the DNS resolver to ask')
    .action(async (flags: { config: string; data: string; sinkPort: string; sink: boolean; realMx?: boolean; resolver?: string }) => {
      await runLocalFleet({
        volleyScript: process.argv[1],
        configPath: flags.config,
        dataDir: flags.data,
        sinkPort: Number(flags.sinkPort),
        embeddedSink: flags.sink,
        realMx: flags.realMx ? { resolver: flags.resolver } : undefined,
        live: process.stdout.isTTY,
      });
    });
}
