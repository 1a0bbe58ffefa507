import { Aws, Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
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

    this.bucketName = `volley-${this.config.name}-events-${this.config.account}-${this.config.region}`;
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
      ],
    });
  }

  /** ARN of the objects under `prefix`. */
  prefixArn(prefix: string): string {
    return `arn:${Aws.PARTITION}:s3:::${this.bucketName}/${prefix}/*`;
  }

  /**
   * Lets one instance role write under its own prefix and nowhere else. Object
   * names are chosen at run time (rotated files), so the prefix ends in a
   * wildcard; the acknowledgement names exactly that resource.
   */
  grantWritePrefix(role: iam.Role, prefix: string): void {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'WriteOwnPrefix',
        actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
        resources: [this.prefixArn(prefix)],
      }),
    );
    Validations.of(role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::${this.bucketName}/${prefix}/*]`,
      reason: 'Write access is limited to this instance\'s own prefix of the events bucket; file names under it are created at run time.',
    });
  }
}
