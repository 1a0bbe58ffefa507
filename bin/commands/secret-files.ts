// `volley secret-files fetch`: the MTA's own secret files (DKIM keys, webhook
// secrets, the VERP key, TLS pairs) from the Secrets Manager secrets the
// environment file lists (mta.fileSecrets, VOLLEY_FILE_SECRETS in
// instance.env), written under /etc/volley/secrets/ before each MTA start (the
// unit's ExecStartPre) and by every `volley config sync`. Prints the paths it
// changed, never a value.
import type { Command } from 'commander';
import { VolleyError } from '../../runtime/shared/errors';
import { owner } from './drain-secret';

/** instance.env's list of secret names: comma-separated (a Secrets Manager name has no comma). */
export const FILE_SECRETS_ENV = 'VOLLEY_FILE_SECRETS';

export function fileSecretIds(value: string | undefined): string[] {
  return (value ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
}

/** One fetch with the SDK client and a line per change through `log` (the unit's journal); resolves to whether a file changed. */
export async function runSecretFilesFetch(flags: { secretIds: readonly string[]; region?: string; dir?: string; user?: string; atStart?: boolean; log: (line: string) => void }): Promise<boolean> {
  const { secretsManagerClient } = await import('../../runtime/bootstrap/proxy-link');
  const { fetchSecretFiles, SECRET_NAME } = await import('../../runtime/bootstrap/secret-files');
  const bad = flags.secretIds.find((id) => !SECRET_NAME.test(id));
  if (bad !== undefined) throw new VolleyError('EUSAGE', `"${bad.slice(0, 100)}" is not a Secrets Manager secret name`);
  const client = secretsManagerClient(flags.region ? { region: flags.region } : {});
  const warn = (message: string): void => flags.log(`volley secret-files: warning: ${message}`);
  // No secret listed (an environment without mta.fileSecrets, or a host with no volley user): nothing is written, so no owner is looked up;
  // files an earlier list wrote are still removed.
  const { result, change } = await fetchSecretFiles(client, flags.secretIds, { dir: flags.dir, owner: flags.user && flags.secretIds.length > 0 ? owner(flags.user) : undefined, warn, atStart: flags.atStart });
  if (result === 'kept') return false;
  for (const path of change.written) flags.log(`volley secret-files: wrote ${path}`);
  for (const path of change.removed) flags.log(`volley secret-files: removed ${path} (no secret lists it any more)`);
  return change.written.length + change.removed.length > 0;
}

export function registerSecretFiles(program: Command): void {
  const command = program.command('secret-files').description('the MTA\'s own secret files (DKIM keys, webhook secrets, TLS pairs) from the Secrets Manager secrets of mta.fileSecrets');
  command
    .command('fetch')
    .description('write every file the listed secrets hold under /etc/volley/secrets/, remove the ones no secret lists any more (before each MTA start, and in config sync)')
    .option('--secret-id <name...>', `the secrets (default: ${FILE_SECRETS_ENV}, comma-separated)`)
    .option('--region <region>', 'AWS region (default: the SDK\'s)', process.env.VOLLEY_REGION)
    .option('--dir <dir>', 'where the files go (their paths in the secrets say /etc/volley/secrets/)')
    .option('--user <name>', 'whose group reads the files (the daemon\'s user; root owns them)', 'volley')
    .action(async (flags: { secretId?: string[]; region?: string; dir?: string; user: string }) => {
      const secretIds = flags.secretId ?? fileSecretIds(process.env[FILE_SECRETS_ENV]);
      // Only volley-mta.service's ExecStartPre runs this command (config sync calls the function): a start, which any failure must not stop while whole files are on disk.
      const changed = await runSecretFilesFetch({ ...flags, secretIds, atStart: true, log: (line) => void process.stderr.write(`${line}\n`) });
      if (!changed) process.stderr.write(`volley secret-files: ${secretIds.length === 0 ? 'no secret listed; ' : ''}nothing changed\n`);
    });
}
