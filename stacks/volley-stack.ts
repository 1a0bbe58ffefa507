import { DefaultStackSynthesizer, Stack, StackProps, Tags } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { EnvironmentConfig } from './environments';

export interface VolleyStackProps extends StackProps {
  readonly config: EnvironmentConfig;
}

/**
 * Where a stack's file assets (its template, the runtime zip, the MTAs'
 * config) are published in the CDK assets bucket: `<stack name>/<hash>.<ext>`.
 * That bucket is the account's and region's, shared by every CDK app deployed
 * there; a prefix of our own is what lets an instance role read what its own
 * stack publishes (RuntimeDistribution.grantRead) and nothing of another
 * tier's or another app's, without naming each object: a deploy's new config
 * object lands under the same prefix, so the role's policy need not change
 * (and race the SSM parameter that names the object) for instances to read it.
 */
export function assetPrefix(stackName: string): string {
  return `${stackName}/`;
}

/** Every Volley stack: pinned to the environment's account, region and literal AZs. */
export class VolleyStack extends Stack {
  readonly config: EnvironmentConfig;

  constructor(scope: Construct, id: string, props: VolleyStackProps) {
    super(scope, id, {
      ...props,
      env: { account: props.config.account, region: props.config.region },
      // The stack name is its id (no stackName prop is ever given), so the prefix is the name instances see as VOLLEY_STACK.
      synthesizer: props.synthesizer ?? new DefaultStackSynthesizer({ bucketPrefix: assetPrefix(props.stackName ?? id) }),
    });
    this.config = props.config;
    Tags.of(this).add('volley:env', props.config.name);
  }

  // An env-bound stack would otherwise look the AZs up, which needs credentials at synth.
  override get availabilityZones(): string[] {
    return [...this.config.availabilityZones];
  }
}
