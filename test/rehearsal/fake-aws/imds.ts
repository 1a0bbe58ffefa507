// A fake EC2 instance metadata service, IMDSv2 only (the launch template
// requires tokens): PUT /latest/api/token, then GET /latest/meta-data/... with
// the token. Serves what the bootstrap reads (runtime/bootstrap/metadata.ts)
// and the instance role's credentials, which the SDK's default chain reads on
// an instance (through AWS_EC2_METADATA_SERVICE_ENDPOINT when set).
import { randomBytes } from 'node:crypto';
import { type FakeRequest, type FakeResponse, type Handler } from './http';

export interface InstanceMetadata {
  instanceId: string;
  availabilityZone: string;
  region: string;
  localIpv4: string;
  roleName: string;
  /** The role credentials' access key id (default one for every role): the fake S3 tells roles apart by it. */
  accessKeyId?: string;
}

export class FakeImds {
  private readonly tokens = new Set<string>();
  /** Every path asked for, in order ("PUT api/token", "GET meta-data/instance-id"...). */
  readonly requests: string[] = [];

  constructor(public metadata: InstanceMetadata) {}

  readonly handler: Handler = (request: FakeRequest): FakeResponse => {
    const path = request.path.replace(/^\/latest\//, '');
    this.requests.push(`${request.method} ${path}`);
    if (request.method === 'PUT' && path === 'api/token') {
      const ttl = Number(request.headers['x-aws-ec2-metadata-token-ttl-seconds']);
      if (!(ttl >= 1 && ttl <= 21600)) return { status: 400, body: 'X-aws-ec2-metadata-token-ttl-seconds must be 1..21600' };
      const token = randomBytes(16).toString('base64');
      this.tokens.add(token);
      return { status: 200, headers: { 'x-aws-ec2-metadata-token-ttl-seconds': String(ttl) }, body: token };
    }
    if (request.method !== 'GET') return { status: 405, body: 'method not allowed' };
    // IMDSv2 only: a GET without a valid token is 401, as on an instance with HttpTokens=required.
    if (!this.tokens.has(String(request.headers['x-aws-ec2-metadata-token'] ?? ''))) return { status: 401, body: 'Unauthorized' };
    const m = this.metadata;
    const credentials = JSON.stringify({
      Code: 'Success',
      Type: 'AWS-HMAC',
      AccessKeyId: m.accessKeyId ?? 'ASIAFAKEREHEARSAL000',
      SecretAccessKey: 'fake-secret',
      Token: 'fake-session-token',
      LastUpdated: new Date().toISOString(),
      Expiration: new Date(Date.now() + 6 * 3600_000).toISOString(),
    });
    const paths: Record<string, string> = {
      'meta-data/instance-id': m.instanceId,
      'meta-data/placement/availability-zone': m.availabilityZone,
      'meta-data/placement/region': m.region,
      'meta-data/local-ipv4': m.localIpv4,
      'meta-data/iam/security-credentials/': m.roleName,
      [`meta-data/iam/security-credentials/${m.roleName}`]: credentials,
    };
    const body = paths[path];
    return body === undefined ? { status: 404, body: 'Not Found' } : { status: 200, headers: { 'content-type': 'text/plain' }, body };
  };
}
