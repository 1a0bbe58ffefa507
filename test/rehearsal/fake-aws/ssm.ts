// A fake SSM Parameter Store: GetParameter in the awsJson1_1 protocol
// (POST, X-Amz-Target: AmazonSSM.GetParameter). The stacks publish the
// config's S3 location as a parameter; volley-config-sync reads it.
import { type FakeRequest, type FakeResponse, type Handler, json, jsonError, requireScope } from './http';

export class FakeSsm {
  readonly parameters = new Map<string, { value: string; version: number }>();
  readonly reads: string[] = [];

  constructor(private readonly region: string, private readonly account = '123456789012') {}

  /** Sets (or updates, bumping the version) a String parameter. */
  put(name: string, value: string): void {
    this.parameters.set(name, { value, version: (this.parameters.get(name)?.version ?? 0) + 1 });
  }

  readonly handler: Handler = (request: FakeRequest): FakeResponse => {
    const refused = requireScope(request, 'ssm', (m) => jsonError(400, 'UnrecognizedClientException', m));
    if (refused) return refused;
    const target = String(request.headers['x-amz-target'] ?? '');
    if (target !== 'AmazonSSM.GetParameter') return jsonError(400, 'UnknownOperationException', `fake SSM does not implement ${target || '(no X-Amz-Target)'}`);
    const input = JSON.parse(request.body.toString() || '{}') as { Name?: string };
    const name = input.Name ?? '';
    this.reads.push(name);
    const p = this.parameters.get(name);
    if (!p) return jsonError(400, 'ParameterNotFound', `Parameter ${name} not found.`);
    return json({
      Parameter: {
        Name: name,
        Type: 'String',
        Value: p.value,
        Version: p.version,
        DataType: 'text',
        LastModifiedDate: Date.now() / 1000,
        ARN: `arn:aws:ssm:${this.region}:${this.account}:parameter${name.startsWith('/') ? '' : '/'}${name}`,
      },
    });
  };
}
