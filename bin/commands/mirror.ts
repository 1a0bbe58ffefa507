// `volley mirror`: runs the HA mirror daemon (runtime/mirror), and the
// operator's verbs on it: `status`, `promote` and `switchover`, which talk
// to the local daemon's admin port.
import type { Command } from 'commander';
import { startMirrorAdmin } from '../../runtime/mirror/admin';
import { loadMirrorConfig, MIRROR_ADMIN_DEFAULT } from '../../runtime/mirror/config';
import { MirrorDaemon, type MirrorStatus } from '../../runtime/mirror/daemon';
import { parseHostPort } from '../../runtime/shared/host-port';
import { createLogger } from '../../runtime/shared/log';

interface AdminFlags {
  config?: string;
  admin?: string;
}

/** The daemon's admin URL: --admin, else the config's admin_listen, else the default. */
function adminUrl(flags: AdminFlags): string {
  const hp = flags.admin ? parseHostPort(flags.admin, '127.0.0.1') : flags.config ? loadMirrorConfig(flags.config).adminListen : MIRROR_ADMIN_DEFAULT;
  const host = hp.address === '0.0.0.0' ? '127.0.0.1' : hp.address === '::' ? '[::1]' : hp.address.includes(':') ? `[${hp.address}]` : hp.address;
  return `http://${host}:${hp.port}`;
}

async function call(url: string, method: 'GET' | 'POST'): Promise<{ status: number; body: Record<string, unknown> }> {
  let res: Response;
  try {
    res = await fetch(url, { method });
  } catch (err) {
    throw new Error(`cannot reach the mirror daemon at ${url}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`);
  }
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** What this node set aside of its own history: where, and how many messages the primary never received. */
function quarantineLine(q: MirrorStatus['quarantine'] | undefined): string {
  if (!q) return 'none';
  const last = q.reports[q.reports.length - 1];
  const filed = last ? `${q.messages} messages never received by the primary, in ${q.reports.length} report(s); last: ${last.dir}/quarantine.json` : 'none';
  return q.pending ? `${filed === 'none' ? '' : `${filed}; `}pending (this node's catch-up sets aside what only it holds)` : filed;
}

function printStatus(s: MirrorStatus): void {
  const lines: [string, string][] = [
    ['role', s.role],
    ['epoch', String(s.epoch)],
    ['mode', s.mode],
    ['peer', `${s.peer} (${s.peer_connected ? 'connected' : 'not connected'})`],
    ['caught up', s.caught_up ? 'yes' : 'no'],
    ['lag', `${s.lag_bytes} bytes, ${s.lag_seconds.toFixed(3)} s`],
    ['last contact', s.last_contact ?? 'never'],
    ['quarantine', quarantineLine(s.quarantine)],
  ];
  // Older daemons do not report it.
  if (s.refused_files > 0) lines.push(['refused', `${s.refused_files} file(s) too large for one frame: not replicated (see the mirror's log)`]);
  if (s.lease) {
    const l = s.lease;
    lines.push(['lease', l.holder ? `${l.holder} (epoch ${String(l.epoch)}) until ${String(l.expires_at)}${l.held_until ? ', held by this node' : ''}` : `none yet (${l.arbiter})`]);
    if (l.errors > 0) lines.push(['arbiter', `${l.errors} errors${l.last_error ? `, last: ${l.last_error}` : ''}`]);
  }
  if (s.sync) {
    const y = s.sync;
    lines.push(['sync', `${y.sync_state} (policy ${y.sync_policy}, timeout ${y.sync_timeout_ms} ms)`]);
    lines.push(['barriers', `${y.barriers_answered} answered, ${y.barriers_waiting} waiting, ${y.barrier_timeouts} timed out${y.barrier_last_ms !== undefined ? `, last ${y.barrier_last_ms} ms` : ''}`]);
    if (y.outdated) lines.push(['outdated', 'yes: may lack mail the primary acknowledged (promote needs --force)']);
    if (y.peer_outdated) lines.push(['peer outdated', 'yes: mail was acknowledged without it (degraded)']);
  }
  for (const [k, v] of lines) process.stdout.write(`${k.padEnd(14)}${v}\n`);
}

export function registerMirror(program: Command): void {
  const mirror = program
    .command('mirror')
    .description('run the HA mirror daemon of one node of a pair (subcommands: status, promote, switchover)')
    .option('--config <file>', 'the mirror config file', process.env.VOLLEY_MIRROR_CONFIG ?? '/etc/volley/mirror.yaml')
    .action(async (flags: { config: string }) => {
      const config = loadMirrorConfig(flags.config);
      const logger = createLogger({ level: config.logLevel, name: 'mirror' });
      const daemon = new MirrorDaemon(config, logger);
      await daemon.start();
      const admin = await startMirrorAdmin(daemon);
      logger.info({ admin: `${config.adminListen.address}:${admin.port}` }, 'mirror: admin port ready');
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'mirror: stopping');
        void Promise.all([daemon.stop(), admin.close()]).then(() => {
          logger.flush();
          process.exit(0);
        });
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });

  mirror
    .command('status')
    .description('role, epoch, peer, mode, lag and whether this node is caught up (from the local daemon)')
    .option('--config <file>', 'the mirror config file (for its admin_listen)')
    .option('--admin <addr:port>', 'the daemon\'s admin address (default: the config\'s admin_listen, else 127.0.0.1:7628)')
    .option('--json', 'print JSON')
    .action(async (flags: AdminFlags & { json?: boolean }) => {
      const { body } = await call(`${adminUrl(flags)}/status`, 'GET');
      if (flags.json) process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
      else printStatus(body as unknown as MirrorStatus);
    });

  mirror
    .command('promote')
    .description('make this secondary the primary (epoch + 1); refused when it is not caught up or is outdated unless --force')
    .option('--config <file>', 'the mirror config file (for its admin_listen)')
    .option('--admin <addr:port>', 'the daemon\'s admin address')
    .option('--force', 'promote even though this node is not caught up or is outdated (mail the old primary held may be lost)')
    .action(async (flags: AdminFlags & { force?: boolean }) => {
      const { status, body } = await call(`${adminUrl(flags)}/promote${flags.force ? '?force=1' : ''}`, 'POST');
      if (status !== 200) {
        process.stderr.write(`volley mirror promote: ${String(body.error)}${body.code ? ` (${String(body.code)})` : ''}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`promoted: primary of epoch ${String(body.epoch)}; start the MTA on this node's persistent path now (promote_command does it, when configured)\n`);
    });

  mirror
    .command('switchover')
    .description('planned: on the primary, stop intake, wait until the secondary holds everything, stop the MTA and hand the primary role to the peer (no loss)')
    .option('--config <file>', 'the mirror config file (for its admin_listen)')
    .option('--admin <addr:port>', 'the daemon\'s admin address')
    .option('--timeout <duration>', 'give up (and resume intake, when the MTA is still running) after this long', '60s')
    .action(async (flags: AdminFlags & { timeout: string }) => {
      const { status, body } = await call(`${adminUrl(flags)}/switchover?timeout=${encodeURIComponent(flags.timeout)}`, 'POST');
      if (status !== 200) {
        process.stderr.write(`volley mirror switchover: ${String(body.error)}${body.code ? ` (${String(body.code)})` : ''}\n`);
        process.exitCode = 1;
        return;
      }
      for (const step of (body.steps as string[] | undefined) ?? []) process.stdout.write(`${step}\n`);
      process.stdout.write(`switched over: the peer is the primary of epoch ${String(body.epoch)}; this node is its secondary\n`);
    });
}
