// `volley drain-secret fetch`: writes the drain secret file from the
// environment's `volley/<env>/drain` secret before each MTA start (the
// unit's ExecStartPre), or keeps the one on disk, with a warning, when AWS
// cannot be reached. The drain itself is `volley drain`.
import { execFileSync } from 'node:child_process';
import { Command } from 'commander';
import { VolleyError } from '../../runtime/shared/errors';

// The SDK loads only when this command runs.
const runtime = () => import('../../runtime/bootstrap/drain-secret');

function owner(user: string): { uid: number; gid: number } {
  const id = (flag: string): number => {
    try {
      return Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());
    } catch {
      throw new VolleyError('EUSAGE', `no user "${user}" to own the drain secret file`);
    }
  };
  return { uid: id('-u'), gid: id('-g') };
}

export function registerDrainSecret(program: Command): void {
  const command = program.command('drain-secret').description('the drain\'s shared HMAC secret, kept in AWS Secrets Manager (volley/<env>/drain)');
  command
    .command('fetch')
    .description('write the drain secret file from the secret (before each MTA start)')
    .option('--secret-id <arn|name>', 'the environment\'s drain secret', process.env.VOLLEY_DRAIN_SECRET_ID)
    .option('--file <path>', 'where the config\'s drain.secret_file points', '/etc/volley/drain.secret')
    .option('--user <name>', 'who owns the file (the daemon\'s user)', 'volley')
    .option('--region <region>', 'AWS region (default: the SDK\'s)', process.env.VOLLEY_REGION)
    .action(async (flags: { secretId?: string; file: string; user: string; region?: string }) => {
      if (!flags.secretId) throw new VolleyError('EUSAGE', 'no secret: pass --secret-id or set VOLLEY_DRAIN_SECRET_ID');
      const { secretsManagerClient } = await import('../../runtime/bootstrap/proxy-link');
      const client = secretsManagerClient(flags.region ? { region: flags.region } : {});
      const warn = (message: string): void => void process.stderr.write(`volley drain-secret: warning: ${message}\n`);
      const done = await (await runtime()).fetchDrainSecret(client, flags.secretId, flags.file, owner(flags.user), warn);
      if (done === 'written') process.stderr.write(`volley drain-secret: wrote ${flags.file}\n`);
    });
}
