// `volley mirror-secret`: the HA mirror link's HMAC secret and CA, kept in the
// environment's `volley/<env>/mirror` Secrets Manager secret (created when the
// environment's MTA slots are pairs, mta.ha). `init` adds the CA once after
// the first deploy; `fetch` runs before each mirror start (the unit's
// ExecStartPre) and writes the files the node's mirror config names: the
// secret, the CA, and a certificate for its listen IP.
import { Command } from 'commander';
import { VolleyError } from '../../runtime/shared/errors';
import { owner } from './drain-secret';

const runtime = () => import('../../runtime/bootstrap/mirror-secret');

interface AwsFlags {
  secretId?: string;
  region?: string;
}

async function client(flags: AwsFlags) {
  if (!flags.secretId) throw new VolleyError('EUSAGE', 'no secret: pass --secret-id or set VOLLEY_MIRROR_SECRET_ID');
  const { secretsManagerClient } = await import('../../runtime/bootstrap/proxy-link');
  return { client: secretsManagerClient(flags.region ? { region: flags.region } : {}), secretId: flags.secretId };
}

function withAws(command: Command): Command {
  return command
    .option('--secret-id <arn|name>', 'the environment\'s mirror secret (volley/<env>/mirror)', process.env.VOLLEY_MIRROR_SECRET_ID)
    .option('--region <region>', 'AWS region (default: the SDK\'s)', process.env.VOLLEY_REGION);
}

export function registerMirrorSecret(program: Command): void {
  const command = program.command('mirror-secret').description('the HA mirror link\'s shared HMAC secret and CA, kept in AWS Secrets Manager (volley/<env>/mirror)');

  withAws(command.command('init').description('add the mirror CA to the environment\'s mirror secret (once, after the first deploy of an environment with pairs)')).action(async (flags: AwsFlags) => {
    const { client: sm, secretId } = await client(flags);
    const result = await (await runtime()).initMirrorSecret(sm, secretId, secretId.replace(/^.*:secret:/, ''));
    process.stdout.write(`${result.changed.length > 0 ? `changed: ${result.changed.join(', ')}` : 'unchanged'}\nmirror CA SHA-256 fingerprint: ${result.caFingerprint}\n`);
  });

  withAws(command.command('fetch').description('write the mirror secret, the mirror CA and this node\'s certificate for its mirror address, where its mirror config names them (before each mirror start)'))
    .option('--config <file>', 'the node\'s mirror config', process.env.VOLLEY_MIRROR_CONFIG ?? '/etc/volley/mirror.yaml')
    .option('--user <name>', 'who owns the files (the daemon\'s user)', 'volley')
    .action(async (flags: AwsFlags & { config: string; user: string }) => {
      const { loadMirrorConfig } = await import('../../runtime/mirror/config');
      const { fetchMirrorFiles, mirrorFiles } = await runtime();
      const files = mirrorFiles(loadMirrorConfig(flags.config), flags.config);
      const { client: sm, secretId } = await client(flags);
      const warn = (message: string): void => void process.stderr.write(`volley mirror-secret: warning: ${message}\n`);
      const done = await fetchMirrorFiles(sm, secretId, files, owner(flags.user), warn);
      if (done === 'written') process.stderr.write(`volley mirror-secret: wrote ${files.secretFile}, ${files.caFile}, ${files.certFile}, ${files.keyFile} (certificate for ${files.ip})\n`);
    });
}
