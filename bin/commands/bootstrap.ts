import { Command, InvalidArgumentError } from 'commander';
import { VolleyError } from '../../runtime/shared/errors';
import { MTA_DEFAULTS, PAIR_DEFAULTS, PROXY_DEFAULTS } from '../../runtime/bootstrap/defaults';

// The bootstrap code and the EC2 client load when a bootstrap command runs, not
// when any volley command starts: every daemon goes through this CLI.
const runtime = () => import('../../runtime/bootstrap');

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a whole number of seconds');
  return n;
}

const ms = (s: number): number => s * 1000;
const sec = (milliseconds: number): number => milliseconds / 1000;

interface CommonFlags {
  slot: string;
  region?: string;
  unit: string;
  readyUrl?: string;
  readyTimeout: number;
  releaseTimeout: number;
  attachTimeout: number;
  signalStack?: string;
  signalResource?: string;
}

function withCommonFlags(command: Command, defaults: { unit: string; readyTimeoutMs: number; releaseTimeoutMs: number; attachTimeoutMs: number }): Command {
  return command
    .requiredOption('--slot <id>', 'the slot this instance fills (the volley:slot tag)')
    .option('--region <region>', 'AWS region (default: from instance metadata)')
    .option('--unit <unit>', 'systemd unit to start once attached', defaults.unit)
    .option('--ready-timeout <seconds>', 'how long the daemon may take to become ready', seconds, sec(defaults.readyTimeoutMs))
    .option('--release-timeout <seconds>', 'how long the previous instance may keep the resource', seconds, sec(defaults.releaseTimeoutMs))
    .option('--attach-timeout <seconds>', 'how long an attach may take', seconds, sec(defaults.attachTimeoutMs))
    .option('--signal-stack <name>', 'CloudFormation stack to signal when ready or failed (omit outside CloudFormation)')
    .option('--signal-resource <logicalId>', 'the slot group\'s logical id in that stack');
}

async function deps(flags: CommonFlags) {
  const { EC2Client } = await import('@aws-sdk/client-ec2');
  const { LinuxSystem, readInstanceIdentity, realClock, stderrLog } = await runtime();
  const identity = await readInstanceIdentity();
  const region = flags.region ?? identity.region;
  const signal = flags.signalStack && flags.signalResource ? { stack: flags.signalStack, resource: flags.signalResource, region, instanceId: identity.instanceId } : undefined;
  return {
    ec2: new EC2Client({ region }),
    system: new LinuxSystem({ signal }),
    clock: realClock,
    log: stderrLog,
    identity: async () => identity,
  };
}

export function registerBootstrap(program: Command): void {
  const bootstrap = program
    .command('bootstrap')
    .description('on instance boot: attach the slot\'s volume (mta) or sending ENI (proxy), start the daemon, signal CloudFormation');

  withCommonFlags(bootstrap.command('mta').description('attach and mount the slot\'s persistent-path volume, then start the MTA'), MTA_DEFAULTS)
    .option('--persistent-path <dir>', 'where the volume is mounted', MTA_DEFAULTS.persistentPath)
    .option('--ready-url <url>', 'readiness endpoint of the started MTA', MTA_DEFAULTS.readyUrl)
    .option('--device-timeout <seconds>', 'how long the attached volume may take to appear as a device', seconds, sec(MTA_DEFAULTS.deviceTimeoutMs))
    .option('--mirror-config <file>', 'a node of an HA pair: its mirror config (attach the mirror interface, start the mirror, and the MTA only on the primary)', process.env.VOLLEY_MIRROR_CONFIG)
    .action(async (flags: CommonFlags & { persistentPath: string; readyUrl: string; deviceTimeout: number; mirrorConfig?: string }) => {
      const options = {
        slot: flags.slot,
        persistentPath: flags.persistentPath,
        unit: flags.unit,
        readyUrl: flags.readyUrl,
        releaseTimeoutMs: ms(flags.releaseTimeout),
        attachTimeoutMs: ms(flags.attachTimeout),
        deviceTimeoutMs: ms(flags.deviceTimeout),
        readyTimeoutMs: ms(flags.readyTimeout),
        byIdDir: MTA_DEFAULTS.byIdDir,
      };
      if (!flags.mirrorConfig) return (await runtime()).bootstrapMta(await deps(flags), options);
      const { loadMirrorConfig } = await import('../../runtime/mirror/config');
      const admin = loadMirrorConfig(flags.mirrorConfig).adminListen;
      await (await runtime()).bootstrapMtaPair(await deps(flags), {
        ...options,
        ...PAIR_DEFAULTS,
        mirrorAdminUrl: `http://${admin.address === '0.0.0.0' ? '127.0.0.1' : admin.address}:${admin.port}`,
      });
    });

  bootstrap
    .command('require-primary')
    .description('before each MTA start (volley-mta.service): on a node of an HA pair, refuse unless its mirror state says primary; elsewhere do nothing')
    .option('--mirror-config <file>', 'the node\'s mirror config (none: not a node of a pair)', process.env.VOLLEY_MIRROR_CONFIG)
    .action(async (flags: { mirrorConfig?: string }) => {
      if (!flags.mirrorConfig) return;
      const { loadMirrorConfig } = await import('../../runtime/mirror/config');
      const { readState } = await import('../../runtime/mirror/state');
      const config = loadMirrorConfig(flags.mirrorConfig);
      const state = readState(config.persistentPath);
      if (state.role !== 'primary') {
        // An MTA on a secondary's path would take mail the pair never replicates, and the mirror refuses to write under it.
        throw new VolleyError('ENOTPRIMARY', `this node is the secondary of its pair (epoch ${state.epoch}, ${config.persistentPath}/mirror/state.json): the MTA runs on the primary only; \`volley mirror promote\` makes this node the primary and starts it`);
      }
    });

  withCommonFlags(bootstrap.command('proxy').description('attach the slot\'s sending ENI, wait for its addresses, then start the proxy'), PROXY_DEFAULTS)
    .option('--ready-url <url>', 'readiness endpoint of the started proxy (its admin_listen)', PROXY_DEFAULTS.readyUrl)
    .option('--address-timeout <seconds>', 'how long the ENI\'s addresses may take to come up', seconds, sec(PROXY_DEFAULTS.addressTimeoutMs))
    .action(async (flags: CommonFlags & { addressTimeout: number; readyUrl: string }) => {
      await (await runtime()).bootstrapProxy(await deps(flags), {
        slot: flags.slot,
        unit: flags.unit,
        readyUrl: flags.readyUrl,
        releaseTimeoutMs: ms(flags.releaseTimeout),
        attachTimeoutMs: ms(flags.attachTimeout),
        addressTimeoutMs: ms(flags.addressTimeout),
        readyTimeoutMs: ms(flags.readyTimeout),
      });
    });
}
