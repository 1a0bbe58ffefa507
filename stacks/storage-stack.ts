import { Aws, Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { arbiterKey, ARBITER_PREFIX, eventsBucketName, shippingPrefix } from './event-shipping';
import { VolleyStack, VolleyStackProps } from './volley-stack';

/** Where delivery logs and accounting files are shipped. Retained: they are records. */
export class StorageStack extends VolleyStack {
  readonly bucket: s3.Bucket;
  /** A plain string, not a token: instance policies name their prefix without a cross-stack export. */
  readonly bucketName: string;
  readonly accessLogsBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: VolleyStackProps) {
    super(scope, id, props);
    const { storage } = this.config;

    this.accessLogsBucket = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      // S3 log delivery writes with an ACL unless the bucket-policy feature flag is on.
      objectOwnership: s3.ObjectOwnership.OBJECT_WRITER,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(storage.expireAfterDays) }],
    });
    Validations.of(this.accessLogsBucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'This bucket is the server access log target; logging it into itself would loop.',
    });

    this.bucketName = eventsBucketName(this.config);
    this.bucket = new s3.Bucket(this, 'Events', {
      bucketName: this.bucketName,
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      // A shipped log file is evidence of what was sent: an overwrite or a delete must be recoverable.
      versioned: true,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 'events/',
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [
        {
          id: 'age-out-logs',
          transitions: [
            { storageClass: s3.StorageClass.INFREQUENT_ACCESS, transitionAfter: Duration.days(storage.infrequentAccessAfterDays) },
            { storageClass: s3.StorageClass.GLACIER, transitionAfter: Duration.days(storage.glacierAfterDays) },
          ],
          expiration: Duration.days(storage.expireAfterDays),
          noncurrentVersionExpiration: Duration.days(30),
          abortIncompleteMultipartUploadAfter: Duration.days(7),
        },
        // An HA pair's arbiter lease is rewritten every few seconds: on this versioned bucket each renewal
        // leaves a version, which is worth nothing after the next one (the shorter expiry of the two rules applies).
        ...(this.config.mta.ha ? [{ id: 'arbiter-lease-versions', prefix: `${ARBITER_PREFIX}/`, noncurrentVersionExpiration: Duration.days(1) }] : []),
      ],
    });
  }

  /** ARN of the objects under `prefix`. */
  prefixArn(prefix: string): string {
    return `arn:${Aws.PARTITION}:s3:::${this.bucketName}/${prefix}/*`;
  }

  /**
   * What an HA pair's mirror needs for its arbiter lease (the mirror config's
   * `arbiter.s3`): s3:GetObject and s3:PutObject (conditional, If-Match /
   * If-None-Match) on that one object and nothing else, so a node can neither
   * read nor take another pair's lease. Plus s3:ListBucket limited by an
   * `s3:prefix` condition to exactly that key: without ListBucket, S3 answers
   * a GET of a lease that does not exist yet (a pair's first promotion) with
   * 403, which the arbiter must treat as an error (it cannot tell "absent"
   * from "denied"), so the first `volley mirror promote` would fail.
   */
  grantArbiter(role: iam.Role, slotId: string): void {
    const key = arbiterKey(this.config.name, slotId);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'OwnArbiterLease',
        actions: ['s3:GetObject', 's3:PutObject'],
        resources: [`arn:${Aws.PARTITION}:s3:::${this.bucketName}/${key}`],
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'OwnArbiterLeaseAbsent',
        actions: ['s3:ListBucket'],
        resources: [`arn:${Aws.PARTITION}:s3:::${this.bucketName}`],
        conditions: { StringEquals: { 's3:prefix': key } },
      }),
    );
  }

  /**
   * What the S3 shipper of node `nodeId` needs, on its own prefix
   * (`mta/<env>/<node>/*`) and nowhere else: s3:PutObject (PutObject, and
   * CreateMultipartUpload, UploadPart, CompleteMultipartUpload of a large
   * file), s3:AbortMultipartUpload (a failed multipart upload is cleaned up),
   * s3:GetObject (the HeadObject that checks size and checksum before the
   * local file is deleted). No ListBucket, no DeleteObject: a node cannot
   * see or remove what it shipped, nor touch another node's files. Object
   * names are chosen at run time (rotated files), so the prefix ends in a
   * wildcard; the acknowledgement names exactly that resource.
   */
  grantShipping(role: iam.Role, nodeId: string): void {
    const prefix = shippingPrefix(this.config.name, nodeId);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ShipToOwnPrefix',
        actions: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:GetObject'],
        resources: [this.prefixArn(prefix)],
      }),
    );
    Validations.of(role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::${this.bucketName}/${prefix}/*]`,
      reason: 'The S3 shipper writes (and HEADs to verify) only under this node\'s own prefix of the events bucket; file names under it are created at run time.',
    });
  }
}
