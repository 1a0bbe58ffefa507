// Starts every fake AWS endpoint an instance calls, each on its own loopback
// port, and returns the environment that points the AWS SDK (and a CLI that
// honours the same variables) at them: AWS_ENDPOINT_URL_<SERVICE> per service
// and AWS_EC2_METADATA_SERVICE_ENDPOINT for instance metadata and the role's
// credentials. Nothing here is reached except through those variables.
import { FakeCloudFormation } from './cloudformation';
import { FakeEc2, type FakeEc2Options } from './ec2';
import { type Endpoint, serve } from './http';
import { FakeImds, type InstanceMetadata } from './imds';
import { FakeS3 } from './s3';
import { FakeSecretsManager } from './secrets-manager';
import { FakeSsm } from './ssm';

export interface FakeAwsOptions extends FakeEc2Options {
  readonly instance: InstanceMetadata;
  /** Loopback address to listen on (127.0.0.1 unless a namespace has another). */
  readonly host?: string;
  /** The account in the ARNs the fakes return (an environment's own, so its templates' ARNs match). */
  readonly account?: string;
}

export interface FakeAws {
  readonly imds: FakeImds;
  readonly ec2: FakeEc2;
  readonly s3: FakeS3;
  readonly ssm: FakeSsm;
  readonly secretsManager: FakeSecretsManager;
  readonly cloudFormation: FakeCloudFormation;
  /** The variables that route the SDK to the fakes. */
  readonly env: Record<string, string>;
  close(): Promise<void>;
}

export async function startFakeAws(options: FakeAwsOptions): Promise<FakeAws> {
  const host = options.host ?? '127.0.0.1';
  const region = options.instance.region;
  const fakes = {
    imds: new FakeImds(options.instance),
    ec2: new FakeEc2(options),
    s3: new FakeS3(),
    ssm: new FakeSsm(region, options.account),
    secretsManager: new FakeSecretsManager(region, options.account),
    cloudFormation: new FakeCloudFormation(),
  };
  const endpoints: Endpoint[] = [];
  try {
    const start = async (handler: Parameters<typeof serve>[0]) => {
      const e = await serve(handler, host);
      endpoints.push(e);
      return e.url;
    };
    const env: Record<string, string> = {
      AWS_EC2_METADATA_SERVICE_ENDPOINT: await start(fakes.imds.handler),
      AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE: 'IPv4',
      AWS_ENDPOINT_URL_EC2: await start(fakes.ec2.handler),
      AWS_ENDPOINT_URL_S3: await start(fakes.s3.handler),
      AWS_ENDPOINT_URL_SSM: await start(fakes.ssm.handler),
      AWS_ENDPOINT_URL_SECRETS_MANAGER: await start(fakes.secretsManager.handler),
      AWS_ENDPOINT_URL_CLOUDFORMATION: await start(fakes.cloudFormation.handler),
      AWS_REGION: region,
    };
    return { ...fakes, env, close: async () => void (await Promise.all(endpoints.map((e) => e.close()))) };
  } catch (err) {
    await Promise.all(endpoints.map((e) => e.close()));
    throw err;
  }
}
