import type { App } from 'aws-cdk-lib';
import { resolve } from 'node:path';
import { DnsStack } from './dns-stack';
import type { EnvironmentConfig } from './environments';
import { IngressStack } from './ingress-stack';
import { MtaTierStack } from './mta-tier-stack';
import { NetworkStack } from './network-stack';
import { ProxyTierStack } from './proxy-tier-stack';
import { StorageStack } from './storage-stack';

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
  const volleyConfigPath = resolve(options.repoRoot, config.volleyConfigFile);

  const network = new NetworkStack(app, `${prefix}-Network`, { config });
  const storage = new StorageStack(app, `${prefix}-Storage`, { config });
  const ingress = new IngressStack(app, `${prefix}-Ingress`, { config, vpc: network.vpc, securityGroup: network.loadBalancerSecurityGroup });
  const mta = new MtaTierStack(app, `${prefix}-Mta`, {
    config,
    vpc: network.vpc,
    securityGroup: network.mtaSecurityGroup,
    storage,
    targetGroups: ingress.endpoints.flatMap((e) => e.targetGroups),
    packageDir: options.packageDir,
    volleyConfigPath,
  });
  const proxy = new ProxyTierStack(app, `${prefix}-Proxy`, {
    config,
    vpc: network.vpc,
    securityGroup: network.proxySecurityGroup,
    packageDir: options.packageDir,
    volleyConfigPath,
  });
  const dns = new DnsStack(app, `${prefix}-Dns`, { config, endpoints: ingress.endpoints });
  return { network, storage, ingress, mta, proxy, dns };
}
