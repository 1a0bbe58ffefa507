import { App, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { join, resolve } from 'node:path';
import { EnvironmentConfig, loadEnvironment, validateEnvironment } from '../../stacks/environments';
import { addVolleyEnvironment, VOLLEY_APP_CONTEXT, VolleyStacks } from '../../stacks/volley-app';

export const REPO_ROOT = resolve(__dirname, '../..');
export const FIXTURE_PACKAGE = join(__dirname, 'fixtures/package');

export interface Built {
  readonly app: App;
  readonly config: EnvironmentConfig;
  readonly stacks: VolleyStacks;
}

/** One environment's stacks, built as bin/cdk.ts builds them (cdk-nag included). */
export function build(envName: string, overrides: { config?: EnvironmentConfig; packageDir?: string; nag?: boolean } = {}): Built {
  const app = new App({ context: VOLLEY_APP_CONTEXT });
  if (overrides.nag !== false) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  const config = overrides.config ?? loadEnvironment(envName, REPO_ROOT);
  const stacks = addVolleyEnvironment(app, { config, repoRoot: REPO_ROOT, packageDir: overrides.packageDir ?? FIXTURE_PACKAGE });
  return { app, config, stacks };
}

export function template(stack: Parameters<typeof Template.fromStack>[0]): Template {
  return Template.fromStack(stack);
}

type Resources = Record<string, { Type: string; Properties?: Record<string, unknown>; DependsOn?: string[]; DeletionPolicy?: string; UpdatePolicy?: unknown; CreationPolicy?: unknown }>;

export function resources(t: Template, type: string): Resources {
  return t.findResources(type) as Resources;
}

/**
 * An environment's file with its MTA slots declared as HA pairs (mta.ha), as
 * an operator would write it: mirrorPort set and volumeSlots listing both
 * nodes' volumes (`<slot>` and `<slot>-b`). Validated like a real file.
 */
export function haEnvironment(envName: string, extra: Record<string, unknown> = {}): EnvironmentConfig {
  const raw = JSON.parse(JSON.stringify(loadEnvironment(envName, REPO_ROOT))) as { mta: Record<string, unknown> };
  const slots = raw.mta.volumeSlots as string[];
  raw.mta = { ...raw.mta, ha: true, mirrorPort: 7627, volumeSlots: [...slots, ...slots.map((s) => `${s}-b`)], ...extra };
  return validateEnvironment(raw, REPO_ROOT);
}

/**
 * An environment's file with the bounce listener declared (mta.inbound), as
 * an operator would add it: one bounce domain inside its hosted zone (the Dns
 * stack makes its MX) and one outside (the operator's to add). Validated.
 */
export function inboundEnvironment(envName: string): EnvironmentConfig {
  const raw = JSON.parse(JSON.stringify(loadEnvironment(envName, REPO_ROOT))) as { mta: Record<string, unknown>; dns: { zoneName: string } };
  raw.mta.inbound = { port: 2525, domains: [`bounces.${raw.dns.zoneName}`, 'fbl.example.org'] };
  return validateEnvironment(raw, REPO_ROOT);
}

/** What every MTA target group's health check is (stacks/constructs/readyz-health-check.ts): /readyz on the admin port. */
export function readyzTargetGroup(adminPort: number): Record<string, unknown> {
  return { Protocol: 'TCP', TargetType: 'instance', HealthCheckProtocol: 'HTTP', HealthCheckPath: '/readyz', HealthCheckPort: String(adminPort), Matcher: { HttpCode: '200' } };
}
