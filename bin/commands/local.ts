import { join } from 'node:path';
import type { Command } from 'commander';
import { fleetLayout } from '../../runtime/local/fleet-layout';
import { runLocalFleet } from '../../runtime/local/local-fleet';

export function registerLocal(program: Command): void {
  program
    .command('local')
    .description('run the local fleet on loopback (what `npm start` does)')
    .option('--config <file>', 'the config for the local MTAs', join(__dirname, '..', 'assets', 'config', 'local.yaml'))
    .option('--data <dir>', 'where the local nodes keep their persistent paths', '.volley-local')
    .option('--port-base <n|auto>', 'lay every port out from N (N, N+1, ...; the printed endpoints say which is which), or "auto": free ports the kernel picks (default: the README\'s fixed ports, lb on 2525/8080)')
    .option('--sink-port <port>', 'the embedded sink MX port (default 2526, or the one the port base gives)')
    .option('--no-sink', 'do not start the embedded sink (something else listens on --sink-port, e.g. the benchmark\'s smtp-sink)')
    .option('--real-mx', 'deliver to real MX servers found through DNS instead of the sink')
    .option('--resolver <ip[:port]>', 'with --real-mx: the DNS resolver to ask')
    .action(async (flags: { config: string; data: string; portBase?: string; sinkPort?: string; sink: boolean; realMx?: boolean; resolver?: string }) => {
      const layout = await fleetLayout(flags.portBase);
      await runLocalFleet({
        volleyScript: process.argv[1],
        configPath: flags.config,
        dataDir: flags.data,
        sinkPort: flags.sinkPort === undefined ? layout.sink : Number(flags.sinkPort),
        embeddedSink: flags.sink,
        realMx: flags.realMx ? { resolver: flags.resolver } : undefined,
        live: process.stdout.isTTY,
        layout,
      });
    });
}
