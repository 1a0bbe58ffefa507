import { Aws, Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { extname } from 'node:path';
import { VolleyError } from '../../runtime/shared/errors';
import { assetPrefix } from '../volley-stack';

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

/** What an instance installs from its stack's assets, by key extension: the runtime (a zipped directory), an MTA config file. */
const INSTALLED_KINDS: readonly string[] = ['.zip', '.yaml', '.yml'];

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

  /**
   * What a slot's instance reads to install itself: s3:GetObject on its own
   * stack's asset objects of the kinds it installs (`<stack>/*.zip`, the
   * runtime; an MTA's `<stack>/*.yaml`, the config), and the config parameter.
   *
   * Not Asset.grantRead: that grants s3:GetObject*, List* and GetBucket* on
   * the whole CDK assets bucket, which every CDK app of the account and region
   * shares (a proxy could read the MTAs' config, any instance any other app's
   * assets). Not the exact keys either (tried, reverted): a deploy publishes a
   * new config object and points the parameter at it, and neither IAM's
   * eventual consistency nor CloudFormation orders the policy naming the new
   * key before the parameter, so running instances were refused it. The
   * stack's own prefix (assetPrefix) never changes, so the policy does not
   * either: every config and runtime a deploy of this stack publishes is
   * readable before anything names it, and an instance a group launches
   * mid-deploy from either template version finds its zip. By extension, not
   * `<stack>/*`: the stack's template is published under the prefix too
   * (`.json`), and holds every slot's user data and inline configs (another
   * proxy's config, another pair node's mirror config), which the SSM deny
   * keeps each instance from.
   */
  grantRead(role: iam.Role, config: PublishedConfig): void {
    const installed = [this.runtime, ...(config.asset ? [config.asset] : [])];
    const prefix = assetPrefix(Stack.of(this).stackName);
    const patterns = new Map<string, s3assets.Asset>();
    for (const asset of installed) {
      const key = asset.s3ObjectKey;
      const ext = extname(key);
      if (!key.startsWith(prefix)) {
        throw new VolleyError('ESTACKASSET', `${this.node.path}: asset ${key} is not published under its stack's prefix ${prefix} (the stack's synthesizer needs bucketPrefix), so no grant can be narrowed to it`);
      }
      // Not .json (the template), and not a file without one, whose key CDK ends with its hash: a grant by that would name one object again.
      if (!INSTALLED_KINDS.includes(ext)) {
        throw new VolleyError('ESTACKASSET', `${this.node.path}: asset ${key} is not a ${INSTALLED_KINDS.join(' or ')} object (a config file's name must end .yaml or .yml): its grant is ${prefix}*<extension>, which must cover every version a deploy publishes and never the stack's template (.json)`);
      }
      patterns.set(`${prefix}*${ext}`, asset);
    }
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ReadOwnStackAssets', actions: ['s3:GetObject'], resources: [...patterns].map(([pattern, asset]) => asset.bucket.arnForObjects(pattern)) }),
    );
    // No KMS grant: the default bootstrap bucket's objects need none, and CDK imports the bucket without its key, so
    // Asset.grantRead gave none either (a bootstrap with --bootstrap-customer-key would need one, before as now).
    for (const [pattern, asset] of patterns) {
      Validations.of(role).acknowledge({
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::${asset.s3BucketName}/${pattern}]`,
        reason: `Read-only (s3:GetObject, no listing) on the ${extname(pattern)} assets this stack publishes under its own prefix of the CDK assets bucket (what the instance installs): a deploy's new one is readable before the SSM parameter names it.`,
      });
    }
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
