import { Stack, StackProps, Tags } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { EnvironmentConfig } from './environments';

export interface VolleyStackProps extends StackProps {
  readonly config: EnvironmentConfig;
}

/** Every Volley stack: pinned to the environment's account, region and literal AZs. */
export class VolleyStack extends Stack {
  readonly config: EnvironmentConfig;

  constructor(scope: Construct, id: string, props: VolleyStackProps) {
    super(scope, id, { ...props, env: { account: props.config.account, region: props.config.region } });
    this.config = props.config;
    Tags.of(this).add('volley:env', props.config.name);
  }

  // An env-bound stack would otherwise look the AZs up, which needs credentials at synth.
  override get availabilityZones(): string[] {
    return [...this.config.availabilityZones];
  }
}
