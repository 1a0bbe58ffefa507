// The fake SSM through a SigV4-signed awsJson1_1 request, the wire format the
// SSM client and CLI send (the project does not install @aws-sdk/client-ssm).
import { serve, type Endpoint } from './http';
import { signedRequest } from './signed-request';
import { FakeSsm } from './ssm';
import { useEnv } from './env-for-test';

const ssm = new FakeSsm('eu-west-1');
let endpoint: Endpoint;
beforeAll(async () => {
  endpoint = await serve(ssm.handler);
});
useEnv(() => ({ AWS_ENDPOINT_URL_SSM: endpoint.url }));
afterAll(() => endpoint.close());

const get = (name: string, service = 'ssm') =>
  signedRequest({ service, endpointVariable: 'SSM', region: 'eu-west-1', headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'AmazonSSM.GetParameter' }, body: JSON.stringify({ Name: name }) });

it('GetParameter returns the published value and its version; a missing one is ParameterNotFound', async () => {
  ssm.put('/volley/dev/config', 's3://volley-config/dev/volley-1.yaml');
  ssm.put('/volley/dev/config', 's3://volley-config/dev/volley-2.yaml');
  const found = await get('/volley/dev/config');
  expect(found.status).toBe(200);
  expect(JSON.parse(found.text).Parameter).toMatchObject({ Name: '/volley/dev/config', Value: 's3://volley-config/dev/volley-2.yaml', Version: 2, Type: 'String' });
  const missing = await get('/volley/dev/other');
  expect([missing.status, JSON.parse(missing.text).__type]).toEqual([400, 'ParameterNotFound']);
  expect(ssm.reads).toEqual(['/volley/dev/config', '/volley/dev/other']);
});

it('refuses a request signed for another service', async () => {
  const wrong = await get('/volley/dev/config', 'ec2');
  expect([wrong.status, JSON.parse(wrong.text).__type]).toEqual([400, 'UnrecognizedClientException']);
});
