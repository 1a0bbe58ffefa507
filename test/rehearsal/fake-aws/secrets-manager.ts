// A fake Secrets Manager: GetSecretValue in the awsJson1_1 protocol
// (X-Amz-Target: secretsmanager.GetSecretValue), by name or ARN. Requests
// signed with an access key that has grants (an instance role's, see grant())
// are checked against them as IAM would check that role's statements, as the
// fake S3 does: the rehearsal then proves each role may read its secrets, and
// only those.
import { type FakeRequest, type FakeResponse, type Handler, json, jsonError, requireScope } from './http';
import { allowedBy, type S3Grant } from './s3';

export class FakeSecretsManager {
  readonly secrets = new Map<string, { value: string; versionId: string }>();
  readonly reads: string[] = [];
  /** Requests refused for want of a grant, as "<access key> <action> <arn or id>". */
  readonly denied: string[] = [];
  private readonly grants = new Map<string, readonly S3Grant[]>();
  private versions = 0;

  constructor(private readonly region: string, private readonly account = '123456789012') {}

  put(name: string, value: string): void {
    this.secrets.set(name, { value, versionId: `00000000-0000-4000-8000-${String(++this.versions).padStart(12, '0')}` });
  }

  arn(name: string): string {
    return `arn:aws:secretsmanager:${this.region}:${this.account}:secret:${name}-AbCdEf`;
  }

  /**
   * From now on, requests signed with `accessKeyId` are allowed only what
   * `grants` allow (an instance role's Secrets Manager statements). Access
   * keys never granted are not checked: the test's own seeding, and fakes used alone.
   */
  grant(accessKeyId: string, grants: readonly S3Grant[]): void {
    this.grants.set(accessKeyId, grants);
  }

  private allowed(accessKeyId: string, action: string, arn: string): boolean {
    return allowedBy(this.grants.get(accessKeyId), action, arn);
  }

  readonly handler: Handler = (request: FakeRequest): FakeResponse => {
    const refused = requireScope(request, 'secretsmanager', (m) => jsonError(400, 'UnrecognizedClientException', m));
    if (refused) return refused;
    const target = String(request.headers['x-amz-target'] ?? '');
    if (target !== 'secretsmanager.GetSecretValue') return jsonError(400, 'UnknownOperationException', `fake Secrets Manager does not implement ${target || '(no X-Amz-Target)'}`);
    const { SecretId: id = '' } = JSON.parse(request.body.toString() || '{}') as { SecretId?: string };
    this.reads.push(id);
    const name = [...this.secrets.keys()].find((n) => n === id || this.arn(n) === id);
    const secret = name === undefined ? undefined : this.secrets.get(name);
    // IAM decides before the service looks: a secret that does not exist is denied too, to a role with no grant on its ARN.
    const arn = name === undefined ? (id.startsWith('arn:') ? id : this.arn(id)) : this.arn(name);
    const accessKeyId = request.scope?.accessKeyId ?? '';
    if (!this.allowed(accessKeyId, 'secretsmanager:GetSecretValue', arn)) {
      this.denied.push(`${accessKeyId} secretsmanager:GetSecretValue ${arn}`);
      return jsonError(400, 'AccessDeniedException', `${accessKeyId} is not authorized to perform: secretsmanager:GetSecretValue on resource: ${id} because no identity-based policy allows the secretsmanager:GetSecretValue action`);
    }
    if (name === undefined || !secret) return jsonError(400, 'ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
    return json({ ARN: this.arn(name), Name: name, SecretString: secret.value, VersionId: secret.versionId, VersionStages: ['AWSCURRENT'], CreatedDate: Date.now() / 1000 });
  };
}
