import type { Command } from 'commander';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../runtime/shared/config/load';
import { hashPassword, sha256Hex } from '../../runtime/shared/password';
import { adminHeaders } from './admin-token';
import { adminUrl } from './flags';
import { FILE_SECRETS_ENV, fileSecretIds, runSecretFilesFetch } from './secret-files';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

export function registerConfig(program: Command): void {
  const config = program.command('config').description('check, refresh and prepare the Volley config');

  config
    .command('check <file>')
    .description('validate a config file; exits 1 naming the line and field of every problem')
    .action((file: string) => {
      try {
        const c = loadConfig(file);
        process.stdout.write(`${file}: ok (${c.vmtas.length} VMTAs, ${c.pools.length} pools, ${c.users.length} users)\n`);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        process.stderr.write(`${err.message}\n`);
        process.exitCode = 1;
      }
    });

  config
    .command('refresh')
    .description('reload the config of a running MTA without dropping connections (same as SIGHUP)')
    .option('--admin <addr:port>', 'the MTA admin address', undefined)
    .option('--token-file <file>', 'the admin token (default: VOLLEY_ADMIN_TOKEN)')
    .action(async (flags: { admin?: string; tokenFile?: string }) => {
      const res = await fetch(`${adminUrl(flags.admin)}/config/refresh`, { method: 'POST', headers: adminHeaders(flags.tokenFile) });
      const body = (await res.json()) as { ok: boolean; errors?: string[]; error?: string };
      if (res.status === 401) {
        process.stderr.write(`refresh refused: ${body.error}\n`);
        process.exitCode = 1;
      } else if (body.ok) process.stdout.write('config refreshed\n');
      else {
        process.stderr.write(`refresh rejected, the running config stays:\n${(body.errors ?? []).join('\n')}\n`);
        process.exitCode = 1;
      }
    });

  config
    .command('sync')
    .description('on an instance: install the config published with the last deploy (SSM, S3) when it changed, and reload the daemon')
    .option('--etc <dir>', 'the instance\'s /etc/volley (holds instance.env)', process.env.VOLLEY_ETC ?? '/etc/volley')
    .option('--user <name>', 'who owns the MTA\'s secret files (the daemon\'s user)', 'volley')
    .action(async (flags: { etc: string; user: string }) => {
      // Loaded here, not when any volley command starts: the daemons never need the SDK clients.
      const { mirrorSyncSettings, parseInstanceEnv, roleCheck, runSystemctl, syncConfig, syncSettings } = await import('../../runtime/instance/config-sync');
      const { SSMClient } = await import('@aws-sdk/client-ssm');
      const { S3Client } = await import('@aws-sdk/client-s3');
      const { readFileSync } = await import('node:fs');
      const env = parseInstanceEnv(readFileSync(`${flags.etc}/instance.env`, 'utf8'));
      const settings = syncSettings(env, flags.etc);
      const ssm = new SSMClient({ region: settings.region });
      const s3 = new S3Client({ region: settings.region });
      const log = (line: string): void => void process.stdout.write(`${line}\n`);
      // A node of an HA pair has its mirror's config too: each is synced even when the other fails, and the first failure is the exit.
      const failures: unknown[] = [];
      for (const s of [settings, mirrorSyncSettings(env, flags.etc)]) {
        // The MTA's own secret files (mta.fileSecrets) with its config: under <etc>/secrets, /etc/volley/secrets on an instance.
        const fetchFiles = s?.role === 'mta'
          ? () => runSecretFilesFetch({ secretIds: fileSecretIds(env[FILE_SECRETS_ENV]), region: settings.region, dir: join(flags.etc, 'secrets'), user: flags.user, log })
          : undefined;
        if (s) await syncConfig(s, { ssm, s3, systemctl: runSystemctl, log, check: roleCheck(s.role, join(flags.etc, 'secrets')), fetchFiles }).catch((err: unknown) => void failures.push(err));
      }
      if (failures.length > 0) throw failures[0];
    });

  config
    .command('hash-password')
    .description('read a password on stdin and print the scrypt hash for users[].password')
    .action(async () => {
      process.stdout.write(`${await hashPassword(await readStdin())}\n`);
    });

  config
    .command('hash-token')
    .description('read an HTTP API or admin token on stdin and print its SHA-256 for http.tokens[].sha256 or admin.tokens[].sha256')
    .action(async () => {
      process.stdout.write(`${sha256Hex(await readStdin())}\n`);
    });
}
