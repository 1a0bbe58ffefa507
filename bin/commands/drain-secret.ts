// `volley drain-secret`: the drain's shared HMAC secret and CA, kept in the
// environment's `volley/<env>/drain` Secrets Manager secret. `init` adds the
// CA once after the first deploy; `fetch` runs before each MTA start (the
// unit's ExecStartPre) and writes the secret, the CA and this instance's
// drain certificate, or keeps the files on disk, with a warning, when AWS
// cannot be reached. The drain itself is `volley drain`.
import { execFileSync } from 'node:child_process';
import { Command } from 'commander';
import { VolleyError } from '../../runtime/shared/errors';

// The SDK and the certificate code load only when this command runs.
const runtime = () => import('../../runtime/bootstrap/drain-secret');

/** Where the files go on an instance: stacks/topology.ts INSTANCE_FILES names the same (a test checks). */
export const DRAIN_FILE_DEFAULTS = {
  secretFile: '/etc/volley/drain.secret',
  caFile: '/etc/volley/drain-ca.crt',
  certFile: '/etc/volley/drain.crt',
  keyFile: '/etc/volley/drain.key',
} as const;

interface AwsFlags {
  secretId?: string;
  region?: string;
}

/** The uid and gid of `user`, who will own the fetched files (the mirror's fetch uses it too). */
export function owner(user: string): { uid: number; gid: number } {
  const id = (flag: string): number => {
    try {
      return Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());
    } catch {
      throw new VolleyError('EUSAGE', `no user "${user}" to own the drain files`);
    }
  };
  return { uid: id('-u'), gid: id('-g') };
}

async function client(flags: AwsFlags): Promise<{ client: import('@aws-sdk/client-secrets-manager').SecretsManagerClient; secretId: string }> {
  if (!flags.secretId) throw new VolleyError('EUSAGE', 'no secret: pass --secret-id or set VOLLEY_DRAIN_SECRET_ID');
  const { secretsManagerClient } = await import('../../runtime/bootstrap/proxy-link');
  return { client: secretsManagerClient(flags.region ? { region: flags.region } : {}), secretId: flags.secretId };
}

function withAws(command: Command): Command {
  return command
    .option('--secret-id <arn|name>', 'the environment\'s drain secret (volley/<env>/drain)', process.env.VOLLEY_DRAIN_SECRET_ID)
    .option('--region <region>', 'AWS region (default: the SDK\'s)', process.env.VOLLEY_REGION);
}

export function registerDrainSecret(program: Command): void {
  const command = program.command('drain-secret').description('the drain\'s shared HMAC secret and CA, kept in AWS Secrets Manager (volley/<env>/drain)');

  withAws(command.command('init').description('add the drain CA to the environment\'s drain secret (once, after the first deploy)')).action(async (flags: AwsFlags) => {
    const { client: sm, secretId } = await client(flags);
    const result = await (await runtime()).initDrainSecret(sm, secretId, secretId.replace(/^.*:secret:/, ''));
    process.stdout.write(`${result.changed.length > 0 ? `changed: ${result.changed.join(', ')}` : 'unchanged'}\ndrain CA SHA-256 fingerprint: ${result.caFingerprint}\n`);
  });

  withAws(command.command('fetch').description('write the drain secret, the drain CA and this instance\'s drain certificate (before each MTA start)'))
    .option('--file <path>', 'the secret: where the config\'s drain.secret_file points', DRAIN_FILE_DEFAULTS.secretFile)
    .option('--ca-file <path>', 'the drain CA certificate (volley drain --ca-file)', DRAIN_FILE_DEFAULTS.caFile)
    .option('--cert-file <path>', 'this instance\'s drain certificate (drain.tls.cert)', DRAIN_FILE_DEFAULTS.certFile)
    .option('--key-file <path>', 'its key (drain.tls.key)', DRAIN_FILE_DEFAULTS.keyFile)
    .option('--ip <address>', 'the address the certificate is for (default: this instance\'s private IP, from instance metadata)')
    .option('--user <name>', 'who owns the files (the daemon\'s user)', 'volley')
    .option('--config <file>', 'the MTA config: without a drain section there is nothing to fetch', '/etc/volley/volley.yaml')
    .action(async (flags: AwsFlags & { file: string; caFile: string; certFile: string; keyFile: string; ip?: string; user: string; config: string }) => {
      // As proxy-link fetch: a node whose config takes no drains (a hand-made or older config) needs no drain files.
      const { loadConfig } = await import('../../runtime/shared/config/load');
      if (!loadConfig(flags.config).drain) {
        process.stderr.write(`volley drain-secret: ${flags.config} has no drain section; nothing to fetch\n`);
        return;
      }
      const { client: sm, secretId } = await client(flags);
      const ip = flags.ip ?? (await (await import('../../runtime/bootstrap/metadata')).readPrivateIp());
      const warn = (message: string): void => void process.stderr.write(`volley drain-secret: warning: ${message}\n`);
      const files = { secretFile: flags.file, caFile: flags.caFile, certFile: flags.certFile, keyFile: flags.keyFile, ip };
      const done = await (await runtime()).fetchDrainFiles(sm, secretId, files, owner(flags.user), warn);
      if (done === 'written') process.stderr.write(`volley drain-secret: wrote ${flags.file}, ${flags.caFile}, ${flags.certFile}, ${flags.keyFile} (certificate for ${ip})\n`);
    });
}
