import type { App } from 'aws-cdk-lib';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { DnsStack } from './dns-stack';
import type { EnvironmentConfig } from './environments';
import { IngressStack } from './ingress-stack';
import { MtaTierStack } from './mta-tier-stack';
import { NetworkStack } from './network-stack';
import { ProxyTierStack } from './proxy-tier-stack';
import { SecretsStack } from './secrets-stack';
import { StorageStack } from './storage-stack';
import { mtaConfigText } from './topology';

/**
 * Context every Volley app starts with. Strong cross-stack references: a
 * producer stack (network, ingress) cannot drop an export a tier still uses.
 */
export const VOLLEY_APP_CONTEXT: Readonly<Record<string, string>> = {
  '@aws-cdk/core:defaultCrossStackReferences': 'strong',
};

export interface VolleyStacks {
  readonly network: NetworkStack;
  readonly storage: StorageStack;
  readonly secrets: SecretsStack;
  readonly ingress: IngressStack;
  readonly mta: MtaTierStack;
  readonly proxy: ProxyTierStack;
  readonly dns: DnsStack;
}

export interface VolleyEnvironmentOptions {
  readonly config: EnvironmentConfig;
  readonly repoRoot: string;
  /** The packaged runtime directory, installed as /opt/volley on every instance. */
  readonly packageDir: string;
}

/** All stacks of one environment, named Volley-<env>-<Concern>, wired by typed props. */
export function addVolleyEnvironment(app: App, options: VolleyEnvironmentOptions): VolleyStacks {
  const { config } = options;
  const prefix = `Volley-${config.name}`;
  const mtaConfigFile = writeGenerated(basename(config.volleyConfigFile), mtaConfigText(config, readFileSync(resolve(options.repoRoot, config.volleyConfigFile), 'utf8')));

  const network = new NetworkStack(app, `${prefix}-Network`, { config });
  const storage = new StorageStack(app, `${prefix}-Storage`, { config });
  const secrets = new SecretsStack(app, `${prefix}-Secrets`, { config });
  const ingress = new IngressStack(app, `${prefix}-Ingress`, { config, vpc: network.vpc, securityGroup: network.loadBalancerSecurityGroup, inboundSecurityGroup: network.inboundLoadBalancerSecurityGroup });
  const mta = new MtaTierStack(app, `${prefix}-Mta`, {
    config,
    vpc: network.vpc,
    securityGroup: network.mtaSecurityGroup,
    storage,
    targetGroups: [...ingress.endpoints.flatMap((e) => e.targetGroups), ...(ingress.inbound ? [ingress.inbound.targetGroup] : [])],
    packageDir: options.packageDir,
    mtaConfigFile,
    proxyLinkSecret: secrets.proxyLink,
    drainSecret: secrets.drain,
    mirror: secrets.mirror ? { secret: secrets.mirror, securityGroups: network.mirrorSecurityGroups } : undefined,
  });
  const proxy = new ProxyTierStack(app, `${prefix}-Proxy`, {
    config,
    vpc: network.vpc,
    securityGroup: network.proxySecurityGroup,
    packageDir: options.packageDir,
    proxyLinkSecret: secrets.proxyLink,
    proxyCaKeySecret: secrets.proxyCaKey,
  });
  const dns = new DnsStack(app, `${prefix}-Dns`, { config, endpoints: ingress.endpoints, inbound: ingress.inbound });
  return { network, storage, secrets, ingress, mta, proxy, dns };
}

// A generated file for an S3 asset, in a folder named by its content: the
// same config always has the same path, and two synths never race on one file.
function writeGenerated(name: string, text: string): string {
  const dir = join(tmpdir(), `volley-generated-${createHash('sha256').update(text).digest('hex').slice(0, 16)}`);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  // Written beside and renamed, so a concurrent synth hashing the file never reads half of it.
  const partial = `${file}.${process.pid}`;
  writeFileSync(partial, text);
  renameSync(partial, file);
  return file;
}
