// `volley proxy-link`: the MTA↔proxy link's secrets in AWS Secrets Manager.
// `init` adds the proxy CA to the environment's secrets once (and rotates);
// `fetch` runs before each daemon start (the units' ExecStartPre) and writes
// the files the daemon's config names, from the secrets (or keeps the ones on
// disk, with a warning, when AWS cannot be reached).
import { execFileSync } from 'node:child_process';
import { Command } from 'commander';
import { VolleyError } from '../../runtime/shared/errors';

// The SDK and the certificate code load only when a proxy-link command runs.
const runtime = () => import('../../runtime/bootstrap/proxy-link');

interface AwsFlags {
  secretId?: string;
  caKeySecretId?: string;
  region?: string;
}

/** The CA key secret beside a link secret named as the Secrets stack names it (volley/<env>/proxy-link). */
function caKeySecretId(flags: AwsFlags, secretId: string): string | undefined {
  if (flags.caKeySecretId) return flags.caKeySecretId;
  const named = /^(volley\/[^/]+\/)proxy-link$/.exec(secretId);
  return named ? `${named[1]}proxy-ca-key` : undefined;
}

const warn = (message: string): void => void process.stderr.write(`volley proxy-link: warning: ${message}\n`);

async function client(flags: AwsFlags): Promise<{ client: import('@aws-sdk/client-secrets-manager').SecretsManagerClient; secretId: string }> {
  if (!flags.secretId) throw new VolleyError('EUSAGE', 'no secret: pass --secret-id or set VOLLEY_PROXY_LINK_SECRET');
  return { client: (await runtime()).secretsManagerClient(flags.region ? { region: flags.region } : {}), secretId: flags.secretId };
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
    .option('--ca-key-secret-id <arn|name>', 'the environment\'s proxy CA key secret (init, fetch proxy; default: volley/<env>/proxy-ca-key beside a named --secret-id)', process.env.VOLLEY_PROXY_CA_KEY_SECRET)
    .option('--region <region>', 'AWS region (default: the SDK\'s)', process.env.VOLLEY_REGION);
}

export function registerProxyLink(program: Command): void {
  const link = program.command('proxy-link').description('the MTA-proxy link\'s shared secret and proxy CA, kept in AWS Secrets Manager');

  withAws(link.command('init').description('add the proxy CA to the environment\'s secret (once), or rotate the CA or the shared secret'))
    .option('--rotate-ca', 'a new CA; the current one stays trusted as previous_ca_cert')
    .option('--drop-previous-ca', 'stop trusting the previous CA (once every proxy has restarted)')
    .option('--rotate-secret', 'a new shared secret; the current one stays accepted by proxies as previous_secret')
    .option('--drop-previous-secret', 'stop accepting the previous shared secret (once every MTA has restarted)')
    .action(async (flags: AwsFlags & { rotateCa?: boolean; dropPreviousCa?: boolean; rotateSecret?: boolean; dropPreviousSecret?: boolean }) => {
      const { client: sm, secretId } = await client(flags);
      const caSecretId = caKeySecretId(flags, secretId);
      if (!caSecretId) throw new VolleyError('EUSAGE', 'no CA key secret: pass --ca-key-secret-id or set VOLLEY_PROXY_CA_KEY_SECRET');
      const result = await (await runtime()).initProxyLinkSecret(sm, { secretId, caSecretId }, {
        rotateCa: flags.rotateCa,
        dropPreviousCa: flags.dropPreviousCa,
        rotateSecret: flags.rotateSecret,
        dropPreviousSecret: flags.dropPreviousSecret,
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
      const done = await (await runtime()).fetchMtaLinkFiles(sm, secretId, { secretFile: proxies.secretFile, caFiles }, owner(flags.user), warn);
      if (done === 'written') process.stderr.write(`volley proxy-link: wrote ${[proxies.secretFile, ...new Set(caFiles)].join(', ')}\n`);
    });
  withAws(fetch.command('proxy').description('the shared secret (and the previous one during a rotation) and a certificate for the proxy\'s listen address, issued by the environment\'s CA'))
    .option('--config <file>', 'the proxy config', '/etc/volley/proxy.yaml')
    .option('--user <name>', 'who owns the files (the daemon\'s user)', 'volley')
    .action(async (flags: AwsFlags & { config: string; user: string }) => {
      const { loadProxyConfig } = await import('../../runtime/proxy/config');
      const config = loadProxyConfig(flags.config);
      if (!config.secretFile) throw new VolleyError('ECONFIG', `${flags.config}: secret_file is needed to install the shared secret`);
      const { client: sm, secretId } = await client(flags);
      const done = await (await runtime()).fetchProxyLinkFiles(
        sm,
        { secretId, caSecretId: caKeySecretId(flags, secretId) },
        { secretFile: config.secretFile, certFile: config.tls.cert, keyFile: config.tls.key, name: config.name, ip: config.listen.address },
        owner(flags.user),
        warn,
      );
      if (done === 'written') process.stderr.write(`volley proxy-link: wrote ${config.secretFile}, ${config.tls.cert}, ${config.tls.key} (certificate for ${config.listen.address})\n`);
    });
}
