// The fake Secrets Manager through a SigV4-signed awsJson1_1 request (the
// stacks engineer is adding @aws-sdk/client-secrets-manager; until then this
// is the wire format that client sends).
import { serve, type Endpoint } from './http';
import { FakeSecretsManager } from './secrets-manager';
import { signedRequest } from './signed-request';
import { useEnv } from './env-for-test';

const secrets = new FakeSecretsManager('eu-west-1');
let endpoint: Endpoint;
beforeAll(async () => {
  endpoint = await serve(secrets.handler);
});
useEnv(() => ({ AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoint.url }));
afterAll(() => endpoint.close());

const get = (id: string) =>
  signedRequest({
    service: 'secretsmanager',
    endpointVariable: 'SECRETS_MANAGER',
    region: 'eu-west-1',
    headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'secretsmanager.GetSecretValue' },
    body: JSON.stringify({ SecretId: id }),
  });

it('GetSecretValue by name and by ARN; an unknown secret is ResourceNotFoundException', async () => {
  secrets.put('volley/dev/proxy-secret', '{"secret":"s3cr3t"}');
  const byName = JSON.parse((await get('volley/dev/proxy-secret')).text);
  expect(byName).toMatchObject({ Name: 'volley/dev/proxy-secret', SecretString: '{"secret":"s3cr3t"}', VersionStages: ['AWSCURRENT'] });
  expect(JSON.parse((await get(byName.ARN)).text).SecretString).toBe('{"secret":"s3cr3t"}');
  const missing = await get('volley/dev/none');
  expect([missing.status, JSON.parse(missing.text).__type]).toEqual([400, 'ResourceNotFoundException']);
});
