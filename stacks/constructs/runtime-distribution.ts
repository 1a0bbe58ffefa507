import { Aws } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';

export interface RuntimeDistributionProps {
  /** The packaged runtime directory (bin/package-asset.ts output): installed as /opt/volley. */
  readonly packageDir: string;
}

/**
 * A config published to a slot: an SSM parameter that either holds the S3
 * URL of the file (the MTAs' shared config, too big for a parameter) or the
 * file itself (a proxy's own small config). volley-config-sync installs it.
 */
export interface PublishedConfig {
  readonly parameter: ssm.IStringParameter;
  /** The parameter's name as written (not a token), for the instance's env file. */
  readonly parameterName: string;
  readonly source: 's3-url' | 'inline';
  /** Where volley-config-sync installs it, the path the daemon's unit names. */
  readonly installPath: string;
  /** The S3 object of an `s3-url` config, read by the instance. */
  readonly asset?: s3assets.Asset;
}

/** Publishes a config file as an S3 asset whose URL an SSM parameter names. */
export function publishConfigFile(scope: Construct, id: string, props: { file: string; parameterName: string; installPath: string }): PublishedConfig {
  const asset = new s3assets.Asset(scope, `${id}`, { path: props.file });
  const parameter = new ssm.StringParameter(scope, `${id}Url`, {
    parameterName: props.parameterName,
    stringValue: asset.s3ObjectUrl,
    description: 'S3 URL of the Volley config; volley-config-sync.timer polls it and runs config refresh on change',
  });
  return { parameter, parameterName: props.parameterName, source: 's3-url', installPath: props.installPath, asset };
}

/** SSM's standard tier holds at most 4 KB; a proxy's config is a few hundred bytes. */
const STANDARD_PARAMETER_MAX = 4096;

/** Publishes a small config's text as the value of an SSM parameter. */
export function publishConfigText(scope: Construct, id: string, props: { text: string; parameterName: string; installPath: string }): PublishedConfig {
  if (Buffer.byteLength(props.text) > STANDARD_PARAMETER_MAX) {
    throw new Error(`${props.parameterName}: the config is ${Buffer.byteLength(props.text)} bytes, over the ${STANDARD_PARAMETER_MAX} of a standard SSM parameter`);
  }
  const parameter = new ssm.StringParameter(scope, id, {
    parameterName: props.parameterName,
    stringValue: props.text,
    description: 'A Volley config; volley-config-sync.timer polls it and reloads the daemon on change',
  });
  return { parameter, parameterName: props.parameterName, source: 'inline', installPath: props.installPath };
}

/** What an instance needs to know about itself, written to /etc/volley/instance.env. */
export interface InstanceSettings {
  readonly role: 'mta' | 'proxy';
  /** The environment's name (dev, staging, prod): the `<env>` of the S3 shipper's keys. */
  readonly environment: string;
  readonly slotId: string;
  /** VOLLEY_NODE_ID: the slot id, or for a node of an HA pair its pair's slot id (the node it becomes when primary). */
  readonly nodeId: string;
  /** Logical id of the slot's Auto Scaling group: the resource cfn-signal reports to. */
  readonly signalResource: string;
  readonly readyTimeoutSeconds: number;
  readonly config: PublishedConfig;
  /** ARN of the environment's proxy-link secret (shared secret, proxy CA). */
  readonly proxyLinkSecretArn: string;
  /** ARN of the proxy CA key secret: proxies only. */
  readonly proxyCaKeySecretArn?: string;
  /** ARN of the drain secret: MTAs only (`volley drain-secret fetch` reads VOLLEY_DRAIN_SECRET_ID). */
  readonly drainSecretArn?: string;
  /** A node of an HA pair: its mirror's published config and the mirror secret's ARN. */
  readonly mirror?: { readonly config: PublishedConfig; readonly secretArn: string };
  /** The operator's secrets of MTA files (mta.fileSecrets): MTAs only (`volley secret-files fetch` reads VOLLEY_FILE_SECRETS). */
  readonly fileSecrets?: readonly string[];
}

/**
 * The runtime bundle as an S3 asset. Its hash is in the launch template, so a
 * new runtime rolls the instances; configs are only reachable through SSM
 * parameters (PublishedConfig), so a new config changes a parameter and
 * reaches running nodes as a reload instead.
 */
export class RuntimeDistribution extends Construct {
  readonly runtime: s3assets.Asset;

  constructor(scope: Construct, id: string, props: RuntimeDistributionProps) {
    super(scope, id);
    this.runtime = new s3assets.Asset(this, 'Runtime', { path: props.packageDir });
  }

  grantRead(role: iam.IRole, config: PublishedConfig): void {
    this.runtime.grantRead(role);
    config.asset?.grantRead(role);
    config.parameter.grantRead(role);
  }

  writeUserData(userData: ec2.UserData, settings: InstanceSettings): void {
    const env = {
      VOLLEY_ROLE: settings.role,
      // The <env> of the S3 shipper's keys. (`VOLLEY_ENV=…` does not end the heredoc below: only a line that is exactly VOLLEY_ENV does.)
      VOLLEY_ENV: settings.environment,
      VOLLEY_SLOT: settings.slotId,
      VOLLEY_NODE_ID: settings.nodeId,
      VOLLEY_REGION: Aws.REGION,
      VOLLEY_STACK: Aws.STACK_NAME,
      VOLLEY_SIGNAL_RESOURCE: settings.signalResource,
      VOLLEY_READY_TIMEOUT: String(settings.readyTimeoutSeconds),
      VOLLEY_CONFIG_PARAMETER: settings.config.parameterName,
      VOLLEY_CONFIG_SOURCE: settings.config.source,
      VOLLEY_CONFIG_FILE: settings.config.installPath,
      VOLLEY_PROXY_LINK_SECRET: settings.proxyLinkSecretArn,
      ...(settings.proxyCaKeySecretArn ? { VOLLEY_PROXY_CA_KEY_SECRET: settings.proxyCaKeySecretArn } : {}),
      // Not VOLLEY_DRAIN_SECRET: that variable holds a secret's value for the daemon, this names where it is kept.
      ...(settings.drainSecretArn ? { VOLLEY_DRAIN_SECRET_ID: settings.drainSecretArn } : {}),
      // Names, comma-separated (a secret's name has no comma); absent, `volley secret-files fetch` removes the files it wrote.
      ...(settings.fileSecrets && settings.fileSecrets.length > 0 ? { VOLLEY_FILE_SECRETS: settings.fileSecrets.join(',') } : {}),
      // A node of an HA pair: `volley bootstrap mta` starts the mirror (and the MTA only if it is the primary),
      // `volley config sync` keeps VOLLEY_MIRROR_CONFIG installed, `volley mirror-secret fetch` reads VOLLEY_MIRROR_SECRET_ID.
      ...(settings.mirror
        ? {
            VOLLEY_MIRROR_CONFIG: settings.mirror.config.installPath,
            VOLLEY_MIRROR_CONFIG_PARAMETER: settings.mirror.config.parameterName,
            VOLLEY_MIRROR_SECRET_ID: settings.mirror.secretArn,
          }
        : {}),
    };
    userData.addCommands(
      'set -euo pipefail',
      // Any failure before the bootstrap runs: power off, which terminates the
      // instance (shutdown behaviour) so the group starts a fresh one.
      "trap 'echo \"volley user data failed at line $LINENO\" >&2; systemctl poweroff' ERR",
      'dnf install -y -q nodejs24 unzip',
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
