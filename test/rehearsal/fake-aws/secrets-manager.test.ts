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

it('holds an access key that has grants to them, as IAM holds a role to its statements (the name-?????? form included); keys without grants are not checked', async () => {
  const { GetSecretValueCommand, SecretsManagerClient } = await import('@aws-sdk/client-secrets-manager');
  secrets.put('volley/dev/mta-files', '{"files":{}}');
  secrets.put('volley/dev/mta-files-2', '{"files":{}}');
  secrets.put('volley/dev/proxy-ca-key', '{"key":"k"}');
  // What the MTA stack grants a slot: the operator's file secret by its ARN pattern, a stack secret by its ARN.
  secrets.grant('ASIASLOTA', [
    { actions: ['secretsmanager:GetSecretValue'], resources: ['arn:aws:secretsmanager:eu-west-1:123456789012:secret:volley/dev/mta-files-??????'] },
    { actions: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'], resources: [secrets.arn('volley/dev/proxy-secret')] },
  ]);
  const slot = new SecretsManagerClient({ region: 'eu-west-1', credentials: { accessKeyId: 'ASIASLOTA', secretAccessKey: 'fake', sessionToken: 'token' } });
  await expect(slot.send(new GetSecretValueCommand({ SecretId: 'volley/dev/mta-files' }))).resolves.toMatchObject({ SecretString: '{"files":{}}' });
  await expect(slot.send(new GetSecretValueCommand({ SecretId: secrets.arn('volley/dev/proxy-secret') }))).resolves.toMatchObject({ SecretString: '{"secret":"s3cr3t"}' });
  // A name the pattern's six characters do not stand for, another secret, and one that does not exist: denied, as IAM denies before the service looks.
  for (const id of ['volley/dev/mta-files-2', 'volley/dev/proxy-ca-key', 'volley/dev/none']) {
    await expect(slot.send(new GetSecretValueCommand({ SecretId: id }))).rejects.toMatchObject({ name: 'AccessDeniedException', message: expect.stringContaining(`not authorized to perform: secretsmanager:GetSecretValue on resource: ${id}`) });
  }
  expect(secrets.denied).toEqual([
    `ASIASLOTA secretsmanager:GetSecretValue ${secrets.arn('volley/dev/mta-files-2')}`,
    `ASIASLOTA secretsmanager:GetSecretValue ${secrets.arn('volley/dev/proxy-ca-key')}`,
    `ASIASLOTA secretsmanager:GetSecretValue ${secrets.arn('volley/dev/none')}`,
  ]);
  // The key of the test above has no grants: unchecked.
  expect(JSON.parse((await get('volley/dev/proxy-ca-key')).text).SecretString).toBe('{"key":"k"}');
});
