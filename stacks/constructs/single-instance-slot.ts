import { ArnFormat, Duration, Stack, Tags, Validations } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import type { PublishedConfig, RuntimeDistribution } from './runtime-distribution';
import { VolleyStack } from '../volley-stack';

/** Tag that binds an instance, its volume or ENI, and its IAM grants to one slot. */
export const SLOT_TAG = 'volley:slot';

export interface SingleInstanceSlotProps {
  readonly slotId: string;
  readonly role: 'mta' | 'proxy';
  readonly vpc: ec2.IVpc;
  readonly availabilityZone: string;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly machineImage: ec2.IMachineImage;
  readonly instanceType: ec2.InstanceType;
  readonly distribution: RuntimeDistribution;
  /** The config this slot's daemon runs with. */
  readonly config: PublishedConfig;
  /** The environment's proxy-link secret: readable by this slot, and by nothing wider. */
  readonly proxyLinkSecret: secretsmanager.ISecret;
  /** The drain secret: given to MTA slots only (a proxy has no queue to drain). */
  readonly drainSecret?: secretsmanager.ISecret;
  /** The operator's secrets of MTA files (mta.fileSecrets, by name): MTA slots only, GetSecretValue on exactly these. */
  readonly fileSecrets?: readonly string[];
  /** The proxy CA key secret: given to proxy slots only (an MTA holding it could mint a certificate for any proxy address). */
  readonly proxyCaKeySecret?: secretsmanager.ISecret;
  /** Boot, attach and (for an MTA) spool recovery must finish within this, or the deploy rolls back. */
  readonly readyTimeout: Duration;
  /** Replace the instance when its load balancer targets stay unhealthy (MTAs), or only when EC2 says so. */
  readonly healthFromLoadBalancer: boolean;
  /** Where launches, terminations and failures of this slot are announced. */
  readonly notifications: sns.ITopic;
  /** The node id the daemon runs as (VOLLEY_NODE_ID); the slot id when absent. Both nodes of an HA pair run as their pair's slot. */
  readonly nodeId?: string;
  /** A node of an HA pair: its mirror's config, the mirror secret, and the node's own mirror group (on the instance too: its peer admits that group). */
  readonly mirror?: {
    readonly config: PublishedConfig;
    readonly secret: secretsmanager.ISecret;
    readonly securityGroup: ec2.ISecurityGroup;
  };
}

/**
 * One position in a tier: an Auto Scaling group of exactly one instance in one
 * AZ, with its own IAM role. Its durable parts (volume, ENI) live beside it
 * and are reattached by the bootstrap, so the instance itself is disposable.
 */
export class SingleInstanceSlot extends Construct {
  readonly slotId: string;
  readonly role: iam.Role;
  readonly group: autoscaling.AutoScalingGroup;

  constructor(scope: Construct, id: string, props: SingleInstanceSlotProps) {
    super(scope, id);
    this.slotId = props.slotId;

    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: `Volley ${props.role} slot ${props.slotId}`,
      // Session Manager replaces SSH: no key pair, no port 22.
      managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore')],
    });
    props.distribution.grantRead(this.role, props.config);
    // GetSecretValue (and DescribeSecret) on this one secret's ARN only.
    props.proxyLinkSecret.grantRead(this.role);
    if (props.proxyCaKeySecret) {
      if (props.role !== 'proxy') throw new Error(`slot ${props.slotId}: only a proxy slot may read the proxy CA key`);
      props.proxyCaKeySecret.grantRead(this.role);
    }
    if (props.drainSecret) {
      if (props.role !== 'mta') throw new Error(`slot ${props.slotId}: only an MTA slot may read the drain secret`);
      props.drainSecret.grantRead(this.role);
    }
    if (props.fileSecrets && props.fileSecrets.length > 0) {
      if (props.role !== 'mta') throw new Error(`slot ${props.slotId}: only an MTA slot reads the operator's file secrets`);
      grantFileSecrets(this.role, props.fileSecrets);
    }
    if (props.mirror) {
      if (props.role !== 'mta') throw new Error(`slot ${props.slotId}: only an MTA slot can be a node of an HA pair`);
      props.mirror.config.parameter.grantRead(this.role);
      props.mirror.secret.grantRead(this.role);
    }
    // AmazonSSMManagedInstanceCore (Session Manager, the drain's Run Command) also allows ssm:GetParameter(s) on
    // every parameter of the account and region: any other app's, SecureStrings under the aws/ssm key included.
    // An instance reads only its own config parameters (volley config sync); the rest is denied.
    const ownParameters = [props.config.parameter, ...(props.mirror ? [props.mirror.config.parameter] : [])];
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'NoOtherParameters',
        effect: iam.Effect.DENY,
        actions: ['ssm:GetParameter', 'ssm:GetParameters', 'ssm:GetParametersByPath', 'ssm:GetParameterHistory'],
        notResources: ownParameters.map((p) => p.parameterArn),
      }),
    );
    acknowledgeSlotRole(this.role);

    const subnets = props.vpc.selectSubnets({ subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, availabilityZones: [props.availabilityZone] });
    // Rendered lazily at synth, so the commands can be added once the group exists.
    const userData = ec2.UserData.forLinux();
    const launchTemplate = new ec2.LaunchTemplate(this, 'Template', {
      machineImage: props.machineImage,
      instanceType: props.instanceType,
      role: this.role,
      securityGroup: props.securityGroup,
      requireImdsv2: true,
      detailedMonitoring: true,
      // A failed boot powers off; terminating instead lets the group start a clean one.
      instanceInitiatedShutdownBehavior: ec2.InstanceInitiatedShutdownBehavior.TERMINATE,
      blockDevices: [
        { deviceName: '/dev/xvda', volume: ec2.BlockDeviceVolume.ebs(30, { encrypted: true, volumeType: ec2.EbsDeviceVolumeType.GP3 }) },
      ],
      userData,
    });
    if (props.mirror) launchTemplate.addSecurityGroup(props.mirror.securityGroup);

    this.group = new autoscaling.AutoScalingGroup(this, 'Group', {
      vpc: props.vpc,
      vpcSubnets: { subnets: subnets.subnets },
      launchTemplate,
      minCapacity: 1,
      maxCapacity: 1,
      notifications: [{ topic: props.notifications }],
      healthChecks: props.healthFromLoadBalancer
        ? autoscaling.HealthChecks.withAdditionalChecks({
            additionalTypes: [autoscaling.AdditionalHealthCheckType.ELB],
            gracePeriod: props.readyTimeout,
          })
        : autoscaling.HealthChecks.ec2({ gracePeriod: props.readyTimeout }),
      // Terminate before launch: the volume (or ENI) can be attached to one
      // instance only, so 0 instances stay in service while the slot is replaced,
      // and the update waits for the new instance's cfn-signal.
      updatePolicy: autoscaling.UpdatePolicy.rollingUpdate({
        maxBatchSize: 1,
        minInstancesInService: 0,
        waitOnResourceSignals: true,
        pauseTime: props.readyTimeout,
      }),
      signals: autoscaling.Signals.waitForCount(1, { timeout: props.readyTimeout }),
    });
    // The rolling update starts once the config parameters name this deploy's objects, so a replaced instance boots
    // with the deploy's config; and the launch template already waits for the role's policy (CDK). That order is what
    // makes the first deploy of the prefixed grant (RuntimeDistribution.grantRead) safe: the new policy cannot read the
    // old config object at the bucket's root, and without it a new instance could read the old parameter and be refused.
    this.group.node.addDependency(props.config.parameter, ...(props.mirror ? [props.mirror.config.parameter] : []));
    Tags.of(this.group).add(SLOT_TAG, props.slotId);
    Tags.of(this.group).add('volley:role', props.role);

    const cfnGroup = this.group.node.defaultChild as autoscaling.CfnAutoScalingGroup;
    const stack = Stack.of(this);
    if (!(stack instanceof VolleyStack)) throw new Error(`slot ${props.slotId}: must be inside a VolleyStack (its environment names the instance)`);
    props.distribution.writeUserData(userData, {
      role: props.role,
      environment: stack.config.name,
      slotId: props.slotId,
      nodeId: props.nodeId ?? props.slotId,
      signalResource: Stack.of(this).getLogicalId(cfnGroup),
      readyTimeoutSeconds: props.readyTimeout.toSeconds(),
      config: props.config,
      proxyLinkSecretArn: props.proxyLinkSecret.secretArn,
      proxyCaKeySecretArn: props.proxyCaKeySecret?.secretArn,
      drainSecretArn: props.drainSecret?.secretArn,
      fileSecrets: props.fileSecrets,
      mirror: props.mirror ? { config: props.mirror.config, secretArn: props.mirror.secret.secretArn } : undefined,
    });
  }

  /** ARN pattern for this slot's instance: ids are unknown until launch, so the tag does the narrowing. */
  instanceArnPattern(): string {
    const stack = Stack.of(this);
    return stack.formatArn({ service: 'ec2', resource: 'instance', resourceName: '*' });
  }

  /**
   * Allows `action` on `resourceArn` and on this slot's instance, both only when tagged with this slot.
   * `sidSuffix` tells a second grant's statements apart (IAM refuses a policy with two equal Sids).
   */
  grantAttach(action: string, resourceArn: string, sidSuffix = ''): void {
    const tagged = { StringEquals: { [`aws:ResourceTag/${SLOT_TAG}`]: this.slotId } };
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: `AttachOwnResource${sidSuffix}`, actions: [action], resources: [resourceArn], conditions: tagged }));
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: `AttachToOwnInstance${sidSuffix}`, actions: [action], resources: [this.instanceArnPattern()], conditions: tagged }));
    const stack = Stack.of(this);
    Validations.of(this.role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:${stack.region}:${stack.account}:instance/*]`,
      reason: `The instance id is unknown until launch; the statement only applies to instances tagged ${SLOT_TAG}=${this.slotId}, i.e. this slot's own instance.`,
    });
  }

  /** Describe calls cannot be scoped to a resource in IAM. */
  grantDescribe(action: string, sidSuffix = ''): void {
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: `FindOwnResource${sidSuffix}`, actions: [action], resources: ['*'] }));
    Validations.of(this.role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: `${action} supports no resource-level permissions; it is read-only and the bootstrap needs it to find the slot's resource by tag.`,
    });
  }
}

/**
 * GetSecretValue on the operator's secrets, by the ARN a name has (AWS appends
 * `-` and six random characters): the secrets are not the stack's, so there is
 * no ISecret to grant from, and DescribeSecret is not needed by the fetch. The
 * `??????` matches exactly that suffix (validate.ts refuses a name that itself
 * ends like one), so no other secret of the account matches.
 */
function grantFileSecrets(role: iam.Role, names: readonly string[]): void {
  const stack = Stack.of(role);
  const arns = names.map((name) => stack.formatArn({ service: 'secretsmanager', resource: 'secret', resourceName: `${name}-??????`, arnFormat: ArnFormat.COLON_RESOURCE_NAME }));
  role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'OperatorFileSecrets', actions: ['secretsmanager:GetSecretValue'], resources: arns }));
}

// The finding that comes from Session Manager; named exactly so a new wildcard
// still fails synth. (The stack's asset objects are acknowledged where they are granted: RuntimeDistribution.grantRead.)
function acknowledgeSlotRole(role: iam.Role): void {
  Validations.of(role).acknowledge({
    id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]',
    reason: 'Session Manager is how operators reach an instance (no SSH key, no port 22); the AWS policy is the supported minimum for it.',
  });
}
