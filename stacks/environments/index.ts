import { dev } from './dev';
import { prod } from './prod';
import { rehearsal } from './rehearsal';
import { staging } from './staging';
import type { EnvironmentConfig } from './schema';
import { validateEnvironment } from './validate';

export type { EnvironmentConfig, LoadBalancerConfig, ProxyConfig } from './schema';
export { EnvironmentConfigError, validateEnvironment } from './validate';

// Raw objects stay untyped on purpose: the validator, not the compiler, is
// what guards them, and its messages name the field.
const RAW: Readonly<Record<string, unknown>> = { dev, staging, prod, rehearsal };

export function environmentNames(): string[] {
  return Object.keys(RAW);
}

export function loadEnvironment(name: string, repoRoot: string): EnvironmentConfig {
  const raw = RAW[name];
  if (raw === undefined) throw new Error(`unknown environment "${name}": use one of ${environmentNames().join(', ')}`);
  return validateEnvironment(raw, repoRoot);
}
