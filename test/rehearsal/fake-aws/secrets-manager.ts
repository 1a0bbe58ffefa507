// A fake Secrets Manager: GetSecretValue in the awsJson1_1 protocol
// (X-Amz-Target: secretsmanager.GetSecretValue), by name or ARN. The stacks
// are moving the daemons' secrets here.
import { type FakeRequest, type FakeResponse, type Handler, json, jsonError, requireScope } from './http';

export class FakeSecretsManager {
  readonly secrets = new Map<string, { value: string; versionId: string }>();
  readonly reads: string[] = [];
  private versions = 0;

  constructor(private readonly region: string, private readonly account = '123456789012') {}

  put(name: string, value: string): void {
    this.secrets.set(name, { value, versionId: `00000000-0000-4000-8000-${String(++this.versions).padStart(12, '0')}` });
  }

  arn(name: string): string {
    return `arn:aws:secretsmanager:${this.region}:${this.account}:secret:${name}-AbCdEf`;
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
    if (name === undefined || !secret) return jsonError(400, 'ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
    return json({ ARN: this.arn(name), Name: name, SecretString: secret.value, VersionId: secret.versionId, VersionStages: ['AWSCURRENT'], CreatedDate: Date.now() / 1000 });
  };
}
