import { Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

// AZ names are literal on purpose: looking them up needs credentials at synth,
// and a slot's volume must name the same AZ as its instance's subnet.
export function acknowledgeLiteralAz(scope: IConstruct): void {
  Validations.of(scope).acknowledge({
    id: 'CloudFormation-Validate::W3010',
    reason: 'AZs are pinned per environment in stacks/environments: a slot and its EBS volume must share one known AZ, and synth must run offline.',
  });
}
