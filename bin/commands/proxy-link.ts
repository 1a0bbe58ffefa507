// `volley proxy-link`: the MTA↔proxy link's secret in AWS Secrets Manager.
// `init` adds the proxy CA to the environment's secret once (and rotates);
// `fetch` runs before each daemon start (the units' ExecStartPre) and writes
// the files the daemon's config names, from the secret.
import { execFileSync } from 'node:child_process';
import { Command } from 'commander';
import { VolleyError } from '../../runtime/shared/errors';

// The SDK and the certificate code load only when a proxy-link command runs.
const runtime = () => import('../../runtime/bootstrap/proxy-link');

interface AwsFlags {
  secretId?: string;
  region?: string;
}

async function client(flags: AwsFlags): Promise<{ client: import('@aws-sdk/client-secrets-manager').SecretsManagerClient; secretId: string }> {
  if (!flags.secretId) throw new VolleyError('EUSAGE', 'no secret: pass --secret-id or set VOLLEY_PROXY_LINK_SECRET');
  const { SecretsManagerClient } = await import('@aws-sdk/client-secrets-manager');
  return { client: new SecretsManagerClient(flags.region ? { region: flags.region } : {}), secretId: flags.secretId };
}

function owner(user: string): { uid: number; gid: number } {
  const id = (flag: string): number => {
    try {
      return Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());
    } catch {
      throw new VolleyError('EUSAGE', `no user "${user}" to own the proxy-link files`);
    }
  };
  return { uid: id('-u'), gid: id('-g') };
}

function withAws(command: Command): Command {
  return command
    .option('--secret-id <arn|name>', 'the environment\'s proxy-link secret', process.env.VOLLEY_PROXY_LINK_SECRET)
    .option('--region <region>', 'AWS region (default: the SDK\'s)', process.env.VOLLEY_REGION);
}

export function registerProxyLink(program: Command): void {
  const link = program.command('proxy-link').description('the MTA-proxy link\'s shared secret and proxy CA, kept in AWS Secrets Manager');

  withAws(link.command('init').description('add the proxy CA to the environment\'s secret (once), or rotate the CA or the shared secret'))
    .option('--rotate-ca', 'a new CA; the current one stays trusted as previous_ca_cert')
    .option('--drop-previous-ca', 'stop trusting the previous CA (once every proxy has restarted)')
    .option('--rotate-secret', 'a new shared secret (links fail until both ends have restarted)')
    .action(async (flags: AwsFlags & { rotateCa?: boolean; dropPreviousCa?: boolean; rotateSecret?: boolean }) => {
      const { client: sm, secretId } = await client(flags);
      const result = await (await runtime()).initProxyLinkSecret(sm, secretId, {
        rotateCa: flags.rotateCa,
        dropPreviousCa: flags.dropPreviousCa,
        rotateSecret: flags.rotateSecret,
        label: secretId.replace(/^.*:secret:/, ''),
      });
      process.stdout.write(`${result.changed.length > 0 ? `changed: ${result.changed.join(', ')}` : 'unchanged'}\nproxy CA SHA-256 fingerprint: ${result.caFingerprint}\n`);
    });

  const fetch = link.command('fetch').description('write this instance\'s proxy-link files from the secret (before each daemon start)');
  withAws(fetch.command('mta').description('the shared secret and the CA bundle named in the MTA config\'s proxies section'))
    .option('--config <file>', 'the MTA config', '/etc/volley/volley.yaml')
    .option('--user <name>', 'who owns the files (the daemon\'s user)', 'volley')
    .action(async (flags: AwsFlags & { config: string; user: string }) => {
      const { loadConfig } = await import('../../runtime/shared/config/load');
      const proxies = loadConfig(flags.config).proxies;
      if (!proxies) {
        process.stderr.write(`volley proxy-link: ${flags.config} has no proxies section; nothing to fetch\n`);
        return;
      }
      if (!proxies.secretFile) throw new VolleyError('ECONFIG', `${flags.config}: proxies.secret_file is needed to install the shared secret`);
      const caFiles = proxies.servers.map((s) => s.caFile).filter((f): f is string => f !== undefined);
      const { client: sm, secretId } = await client(flags);
      const link = await runtime();
      await link.installMtaLinkFiles(await link.readProxyLinkSecret(sm, secretId), secretId, { secretFile: proxies.secretFile, caFiles }, owner(flags.user));
      process.stderr.write(`volley proxy-link: wrote ${[proxies.secretFile, ...new Set(caFiles)].join(', ')}\n`);
    });
  withAws(fetch.command('proxy').description('the shared secret and a certificate for the proxy\'s listen address, issued by the environment\'s CA'))
    .option('--config <file>', 'the proxy config', '/etc/volley/proxy.yaml')
    .option('--user <name>', 'who owns the files (the daemon\'s user)', 'volley')
    .action(async (flags: AwsFlags & { config: string; user: string }) => {
      const { loadProxyConfig } = await import('../../runtime/proxy/config');
      const config = loadProxyConfig(flags.config);
      if (!config.secretFile) throw new VolleyError('ECONFIG', `${flags.config}: secret_file is needed to install the shared secret`);
      const { client: sm, secretId } = await client(flags);
      const link = await runtime();
      await link.installProxyLinkFiles(
        await link.readProxyLinkSecret(sm, secretId),
        secretId,
        { secretFile: config.secretFile, certFile: config.tls.cert, keyFile: config.tls.key, name: config.name, ip: config.listen.address },
        owner(flags.user),
      );
      process.stderr.write(`volley proxy-link: wrote ${config.secretFile}, ${config.tls.cert}, ${config.tls.key} (certificate for ${config.listen.address})\n`);
    });
}
