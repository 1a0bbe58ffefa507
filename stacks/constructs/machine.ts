import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type { EnvironmentConfig } from '../environments';

// The environment's pinned AMI; a lookup would resolve at deploy time and
// replace instances whenever AWS publishes a new image.
export function pinnedImage(config: EnvironmentConfig): ec2.IMachineImage {
  return ec2.MachineImage.genericLinux({ [config.region]: config.amiId });
}
