import { Aws } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';

export interface RuntimeDistributionProps {
  /** The packaged runtime directory (bin/package-asset.ts output): installed as /opt/volley. */
  readonly packageDir: string;
  /** The Volley config file from git, published beside the runtime. */
  readonly volleyConfigFile: string;
  /** SSM parameter holding the config's S3 URL, e.g. /volley/prod/mta/config-url. */
  readonly configParameterName: string;
}

/** What an instance needs to know about itself, written to /etc/volley/instance.env. */
export interface InstanceSettings {
  readonly role: 'mta' | 'proxy';
  readonly slotId: string;
  /** Logical id of the slot's Auto Scaling group: the resource cfn-signal reports to. */
  readonly signalResource: string;
  readonly readyTimeoutSeconds: number;
}

/**
 * The runtime bundle and the Volley config as S3 assets. The runtime's hash is
 * in the launch template, so a new runtime rolls the instances; the config is
 * only reachable through an SSM parameter, so a new config changes the
 * parameter and reaches running nodes as a `config refresh` instead.
 */
export class RuntimeDistribution extends Construct {
  readonly runtime: s3assets.Asset;
  readonly config: s3assets.Asset;
  readonly configParameter: ssm.StringParameter;

  constructor(scope: Construct, id: string, props: RuntimeDistributionProps) {
    super(scope, id);
    this.runtime = new s3assets.Asset(this, 'Runtime', { path: props.packageDir });
    this.config = new s3assets.Asset(this, 'Config', { path: props.volleyConfigFile });
    this.configParameter = new ssm.StringParameter(this, 'ConfigUrl', {
      parameterName: props.configParameterName,
      stringValue: this.config.s3ObjectUrl,
      description: 'S3 URL of the Volley config; volley-config-sync.timer polls it and runs config refresh on change',
    });
  }

  grantRead(role: iam.IRole): void {
    this.runtime.grantRead(role);
    this.config.grantRead(role);
    this.configParameter.grantRead(role);
  }

  writeUserData(userData: ec2.UserData, settings: InstanceSettings): void {
    const env = {
      VOLLEY_ROLE: settings.role,
      VOLLEY_SLOT: settings.slotId,
      VOLLEY_NODE_ID: settings.slotId,
      VOLLEY_REGION: Aws.REGION,
      VOLLEY_STACK: Aws.STACK_NAME,
      VOLLEY_SIGNAL_RESOURCE: settings.signalResource,
      VOLLEY_READY_TIMEOUT: String(settings.readyTimeoutSeconds),
      VOLLEY_CONFIG_PARAMETER: this.configParameter.parameterName,
    };
    userData.addCommands(
      'set -euo pipefail',
      // Any failure before the bootstrap runs: power off, which terminates the
      // instance (shutdown behaviour) so the group starts a fresh one.
      "trap 'echo \"volley user data failed at line $LINENO\" >&2; systemctl poweroff' ERR",
      'dnf install -y -q nodejs24 aws-cfn-bootstrap unzip',
      'mkdir -p /opt/volley /etc/volley',
      'cat > /etc/volley/instance.env <<\'VOLLEY_ENV\'',
      ...Object.entries(env).map(([key, value]) => `${key}=${value}`),
      'VOLLEY_ENV',
    );
    const zip = userData.addS3DownloadCommand({
      bucket: this.runtime.bucket,
      bucketKey: this.runtime.s3ObjectKey,
      localFile: '/tmp/volley-runtime.zip',
    });
    userData.addCommands(`unzip -o -q ${zip} -d /opt/volley`, '/opt/volley/install.sh');
  }
}
